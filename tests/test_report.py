"""`pmpo report` on real run folders made by the optimizer with a scripted engine (no model)."""

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from pmpo_ray.cli import main
from pmpo_ray.jobs import OptimizeJobConfig
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.reports.build import write_report
from pmpo_ray.reports.prompt_diff import markdown_diff, word_diff
from pmpo_ray.run_folder.write import write_suite_summary, write_suite_tasks, write_task_run
from pmpo_ray.suite.checkpoints import SuiteCheckpoints
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.task import Task
from tests.fakes import FakeEngine, scripted_rewrites

MARKUP = '<script>alert("x")</script> & Think.'


def toy_task(task_id, fmt="supervised", prompt="Think."):
    rejected = ("wrong answer",) if fmt == "preference" else ()
    train = tuple(
        Example(str(i), f"question {i}", "the answer " * (i + 1), rejected) for i in range(6)
    )
    return Task(task_id, fmt, "answer", prompt, train, (Example("t0", "q", "a", rejected),))


def job_config(task) -> OptimizeJobConfig:
    """The config a toy task would have run under (its data exists only in memory)."""
    objective = "preference" if task.format == "preference" else "ce"
    return OptimizeJobConfig.model_validate(
        {
            "task": {
                "name": task.task_id,
                "data": "toy.jsonl",
                "format": task.format,
                "initial_prompt": task.initial_prompt,
            },
            "optimizer": {"iterations": 2, "objective": objective},
        }
    )


def make_suite(out: Path, tasks) -> Path:
    engine = FakeEngine(scripted_rewrites)
    jobs = [job_config(task) for task in tasks]
    runs = [
        TaskRun(task, job.optimizer, engine.count_tokens, job.prompt_format)
        for task, job in zip(tasks, jobs)
    ]
    with SuiteCheckpoints(runs, out) as checkpoints:  # writes rounds.jsonl
        results = run_rounds(runs, rewriter=engine, scorer=engine, on_round=checkpoints.on_round)
    write_suite_tasks(out, results, jobs)
    write_suite_summary(out, {"name": "test"}, results)
    return out


def make_single(out: Path, task) -> Path:
    engine = FakeEngine(scripted_rewrites)
    job = job_config(task)
    run = TaskRun(task, job.optimizer, engine.count_tokens, job.prompt_format)
    [result] = run_rounds([run], rewriter=engine, scorer=engine)
    write_task_run(result, out, job)
    return out


def prompt_entry(name, text, ce, accuracy, pairwise):
    return {
        "name": name,
        "text": text,
        "heldout_ce": ce,
        "heldout_loss": ce + 0.5,
        "accuracy": accuracy,
        "pairwise_accuracy": pairwise,
        "forward_passes": 10,
        "tokens_scored": 1000,
        "tokens_generated": 0 if accuracy is None else 300,
        "seconds": 1.5,
        "option_accuracy": None,
        "option_accuracy_norm": None,
        "from_cache": False,
        "ci95": {},  # no intervals: tests/test_report_intervals.py adds them
        "vs_initial": {},
        "choices": None,
    }


def write_evaluation(folder: Path, fmt="supervised") -> dict:
    """An evaluation.json in the format `pmpo evaluate` writes."""
    result = json.loads((folder / "result.json").read_text())
    best = json.loads((folder / "best_prompt.json").read_text())
    preference = fmt == "preference"
    metric = {True: (None, 0.5), False: (0.5, None)}[preference]
    better = {True: (None, 0.75), False: (0.75, None)}[preference]
    evaluation = {
        "task_id": result["task_id"],
        "format": fmt,
        "answer_match": "none" if preference else "exact",
        "n_train": 6,
        "n_heldout": 20,
        "prompts": [
            prompt_entry("initial", "Think.", 2.0, *metric),
            prompt_entry("optimized", best["text"], 1.0, *better),
            prompt_entry("no_instruction", "", 2.5, *metric),
            prompt_entry("step_by_step", "Let's think step by step.", 1.8, *metric),
        ],
        "gold_shares": None,
        "training": {"initial_loss": result["initial_loss"], "best_loss": result["best_loss"]},
        "generation_counterfactual": {
            "candidates_scored": 13,
            "train_examples": 6,
            "mean_answer_tokens": 12.5,
            "answer_length_from": "answers",
            "generated_tokens": 975,
            "loss_based_tokens_generated": 130,
        },
        "seconds": 6.0,
        "basis": {},
    }
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return evaluation


def png_is_valid(path: Path) -> bool:
    """PNG signature, then every chunk's CRC, ending at IEND with image data in between."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    offset, kinds = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return False
        kinds.append(kind)
        offset += 12 + length
    return kinds[0] == b"IHDR" and b"IDAT" in kinds and kinds[-1] == b"IEND"


def referenced_images(run_dir: Path) -> list[Path]:
    markdown = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    in_markdown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    in_html = re.findall(r'<img src="([^"]+)"', html)
    assert in_markdown == in_html
    return [run_dir / src for src in in_markdown]


@pytest.fixture
def suite(tmp_path):
    out = make_suite(
        tmp_path / "suite", [toy_task("navigate"), toy_task("pairs", fmt="preference")]
    )
    write_evaluation(out / "tasks" / "navigate")
    write_evaluation(out / "tasks" / "pairs", fmt="preference")
    return out


def test_suite_report_has_summary_tables_curves_diff_and_cost(suite, capsys):
    assert main(["report", str(suite)]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        str(suite / "report.html"),
        str(suite / "report.md"),
    ]
    markdown = (suite / "report.md").read_text()
    for task_id, fmt, metric in (
        ("navigate", "supervised", "50.0% → 75.0%"),
        ("pairs", "preference", "50.0% → 75.0%"),
    ):
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {task_id} |"))
        assert f"| {fmt} | 2 |" in row and "| 2.0000 → 1.0000 |" in row and metric in row
        assert f"## Task {task_id}" in markdown
    assert "- **mean held-out CE**: 2.0000 → 1.0000" in markdown
    assert "- **mean held-out accuracy (1 task(s))**: 50.0% → 75.0%" in markdown
    assert "- **mean held-out pairwise accuracy (1 task(s))**: 50.0% → 75.0%" in markdown
    # Pairwise accuracy, read from log-probabilities, has its own column beside accuracy;
    # option accuracy has none: no task here has options.
    assert "| held-out CE | accuracy | pairwise accuracy | forward passes |" in markdown
    pairs = next(line for line in markdown.splitlines() if line.startswith("| pairs |"))
    assert "| — | 50.0% → 75.0% |" in pairs
    assert "option accuracy" not in markdown
    for label in ("initial", "optimized", "baseline: no instruction"):
        assert markdown.count(f"| {label} |") == 2, label
    assert markdown.count('| baseline: "Let\'s think step by step" |') == 2
    assert "| held-out preference loss |" in markdown  # the preference task's own column
    assert "would have generated 975 tokens" in markdown
    assert markdown.count("- **rejected rewrites**: ") == 2  # one line per task, by reason
    assert "loss-based selection generated 130 (7.5× fewer)" in markdown
    rounds = (suite / "rounds.jsonl").read_text().splitlines()
    assert "## Rounds" in markdown
    assert sum(1 for line in markdown.splitlines() if re.match(r"\| \d+ \| \d+ \|", line)) == len(
        rounds
    )
    images = referenced_images(suite)
    assert {p.name for p in images} == {"loss-navigate.png", "loss-pairs.png", "rounds.png"}
    assert all(png_is_valid(p) for p in images)


def test_prompt_diff_shows_removed_and_added_words(suite):
    write_report(suite)
    best = json.loads((suite / "tasks" / "navigate" / "best_prompt.json").read_text())["text"]
    assert best.startswith("Read carefully")  # the scripted rewrite won
    markdown = (suite / "report.md").read_text()
    assert f"```diff\n[-Think.-]{{+{best}+}}\n```" in markdown
    html = (suite / "report.html").read_text()
    assert f"<del>Think.</del><ins>{best}</ins>" in html


def test_word_diff_round_trips_and_fences_backticks():
    old, new = "Answer the question.\nBe brief.", "Answer each question.\nBe ``very`` brief."
    pieces = word_diff(old, new)
    assert "".join(p.text for p in pieces if p.op != "added") == old
    assert "".join(p.text for p in pieces if p.op != "removed") == new
    block = markdown_diff(pieces)
    assert block.startswith("```diff\n")  # longer than the prompt's ``, so it cannot close
    assert "Answer [-the-] {+each+} question.\nBe {+``very``+} brief." in block


def test_run_without_evaluation_renders_training_columns_and_the_hint(tmp_path):
    run_dir = make_single(tmp_path / "navigate", toy_task("navigate"))
    files = write_report(run_dir)
    markdown = files.markdown.read_text()
    assert "not evaluated yet: run `pmpo evaluate RUN_DIR`" in markdown
    result = json.loads((run_dir / "result.json").read_text())
    training = f"{result['initial_loss']:.4f} → {result['best_loss']:.4f}"
    lost = f"{100 * result['format_loss_share']:.1f}%"
    assert f"| navigate | — | 2 | {lost} | {training} | — | not evaluated yet |" in markdown
    assert f"- **rewrites lost to format**: {lost} of generated rewrites (no_prompt_tag" in markdown
    assert f"| initial | {result['initial_loss']:.4f} | — | — |" in markdown
    assert "<code>pmpo evaluate RUN_DIR</code>" in files.html.read_text()
    assert all(png_is_valid(p) for p in referenced_images(run_dir))


def test_prompt_markup_is_escaped_everywhere(tmp_path):
    run_dir = make_single(tmp_path / "run", toy_task("x<b>|y", prompt=MARKUP))
    files = write_report(run_dir)
    html = files.html.read_text()
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Think." in html
    markdown = files.markdown.read_text()
    outside_fences = re.sub(r"(`{3,})[a-z]*\n.*?\n\1", "", markdown, flags=re.DOTALL)
    assert "<script" in markdown and "<script" not in outside_fences  # verbatim only in code
    assert "## Task x&lt;b&gt;\\|y" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| x&lt;b&gt;"))
    assert len(re.split(r"(?<!\\)\|", row)) == 11 + 2  # the id's | did not add a column


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "result.json").unlink(), "not a run folder"),
        (lambda d: (d / "history.parquet").write_text("x"), "history.parquet: cannot read"),
        (
            lambda d: (d / "evaluation.json").write_text('{"prompts": [{"name": "initial"}]}'),
            r"evaluation\.json: field 'task_id': Field required",
        ),
    ],
    ids=["no-result", "bad-history", "bad-evaluation"],
)
def test_broken_run_folder_is_a_clear_error(tmp_path, capsys, damage, message):
    run_dir = make_single(tmp_path / "run", toy_task("t"))
    damage(run_dir)
    assert main(["report", str(run_dir)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such run folder" in capsys.readouterr().err


def test_report_opens_in_headless_chromium_without_errors(tmp_path):
    from tests.browser_check import BrowserMissing, check_page

    files = write_report(make_suite(tmp_path / "marked", [toy_task("m", prompt=MARKUP)]))
    try:
        page = check_page(files.html)
    except BrowserMissing as error:
        pytest.fail(f"{error}; run the Makefile's browser install step first")
    assert page.problems == ()
    assert page.images == len(files.images) == 2 and page.scripts == 0
    assert '<script>alert("x")</script> & Think.' in page.text  # shown as text, never run
    # The check itself must see breakage: a missing and a corrupt image in a copy of the page.
    (files.html.parent / "report_files" / "corrupt.png").write_bytes(b"\x89PNG not really")
    broken = files.html.parent / "broken.html"
    broken.write_text(
        files.html.read_text().replace(
            "</body>",
            '<img src="report_files/gone.png"><img src="report_files/corrupt.png"></body>',
        )
    )
    problems = "\n".join(check_page(broken).problems)
    assert "image does not load or decode: report_files/gone.png" in problems
    assert "image does not load or decode: report_files/corrupt.png" in problems


def add_option_accuracy(folder: Path, values: dict[str, tuple[float, float]]) -> None:
    """Prompt name -> (option accuracy, length-normalized), written into evaluation.json."""
    path = folder / "evaluation.json"
    evaluation = json.loads(path.read_text())
    for prompt in evaluation["prompts"]:
        acc, norm = values.get(prompt["name"], (0.5, 0.5))
        prompt.update(option_accuracy=acc, option_accuracy_norm=norm)
    path.write_text(json.dumps(evaluation))


def test_option_accuracy_shows_beside_accuracy_where_a_task_measured_it(tmp_path):
    out = make_suite(
        tmp_path / "suite", [toy_task("choice", fmt="multiple_choice"), toy_task("plain")]
    )
    write_evaluation(out / "tasks" / "choice", fmt="multiple_choice")
    add_option_accuracy(out / "tasks" / "choice", {"initial": (0.25, 0.5), "optimized": (0.5, 1.0)})
    write_evaluation(out / "tasks" / "plain")
    files = write_report(out)
    markdown = files.markdown.read_text()
    lines = markdown.splitlines()

    columns = "| accuracy | option accuracy | length-normalized option accuracy |"
    assert markdown.count(columns) == 2  # the tasks table and the choice task's own table
    assert "pairwise accuracy" not in markdown
    choice = next(line for line in lines if line.startswith("| choice |"))
    assert "| 50.0% → 75.0% | 25.0% → 50.0% | 50.0% → 100.0% |" in choice
    plain = next(line for line in lines if line.startswith("| plain |"))
    assert "| 50.0% → 75.0% | — | — |" in plain
    assert "- **mean held-out accuracy (2 task(s))**: 50.0% → 75.0%" in markdown
    assert "- **mean held-out option accuracy (1 task(s))**: 25.0% → 50.0%" in markdown
    summary = "- **mean held-out length-normalized option accuracy (1 task(s))**: 50.0% → 100.0%"
    assert summary in markdown
    initial_rows = [line for line in lines if line.startswith("| initial |")]
    assert sum("| 2.0000 | 50.0% | 25.0% | 50.0% |" in line for line in initial_rows) == 1
    assert "length in characters" in markdown  # what the normalization divides by, said once
    html = files.html.read_text()
    assert "<th>option accuracy</th><th>length-normalized option accuracy</th>" in html
