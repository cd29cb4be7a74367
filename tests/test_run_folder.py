"""The run folder's one owner: what is written reads back as the same records as the results in
memory, each task folder carries its own resolved config, --overwrite touches only the job's
outputs, and a damaged file is named in the error."""

import json
import shutil

import pytest
import yaml

from pmpo_ray.jobs import OptimizeJobConfig, SuiteConfig, task_job_config
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.from_results import run_folder_from_results
from pmpo_ray.run_folder.read import read_run_folder
from pmpo_ray.run_folder.write import (
    remove_results,
    write_suite_summary,
    write_suite_tasks,
    write_task_run,
)
from pmpo_ray.tasks.task import load_task
from tests.failures import suite_config
from tests.fakes import FakeEngine, scripted_rewrites

# The two-task suite of tests/failures.py, one iteration, its second task with optimizer
# settings of its own, prompts in the user turn, evaluated on 5 held-out examples.
SUITE = suite_config(iterations=1)
SUITE["tasks"][1]["optimizer"] = {
    "iterations": 2,
    "hard_cases": 1,
    "rewrites_per_case": 1,
    "seed": 7,
}
SUITE.update(prompt_format={"role": "user"}, evaluation={"max_examples": 5})


@pytest.fixture(scope="module")
def suite_run():
    """The suite optimized once against the scripted engine: (config, job configs, results)."""
    config = SuiteConfig.model_validate(SUITE)
    jobs = [task_job_config(config, entry) for entry in config.tasks]
    engine = FakeEngine(scripted_rewrites)
    runs = [
        TaskRun(load_task(job.task), job.optimizer, engine.count_tokens, job.prompt_format)
        for job in jobs
    ]
    return config, jobs, run_rounds(runs, rewriter=engine, scorer=engine)


def write_suite(out, suite_run):
    config, jobs, results = suite_run
    write_suite_tasks(out, results, jobs)
    return write_suite_summary(out, config.model_dump(mode="json"), results)


def test_task_folder_reads_back_as_the_results_in_memory(tmp_path, suite_run):
    _, [job, _], [result, _] = suite_run
    write_task_run(result, tmp_path / "run", job)

    written = {p.name for p in (tmp_path / "run").iterdir()}
    task_files = {layout.RESULT, layout.CONFIG, layout.HISTORY, layout.ITERATIONS}
    assert written == task_files | {layout.BEST_PROMPT, layout.BEST_PROMPT_TEXT}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left behind

    folder = read_run_folder(tmp_path / "run")
    assert folder == run_folder_from_results(tmp_path / "run", [result], [job], kind="task")
    [task] = folder.tasks
    assert folder.kind == "task" and task.config == job and task.evaluation is None
    assert (task.initial_prompt, task.best_prompt) == (result.initial.text, result.best.text)
    assert (task.initial_loss, task.best_loss) == (result.initial.loss, result.best.loss)
    assert task.candidates_scored == 1 + 2  # the initial prompt and two rewrites
    assert folder.engine == job.scorer.engine and folder.prompt_format.role == "user"


def test_rejected_rewrites_are_counted_by_reason_and_read_back(tmp_path, suite_run):
    from dataclasses import replace

    from pmpo_ray.pmpo.records import RejectedRewrite

    _, [job, _], [result, _] = suite_run
    reasons = ("leaks_example", "duplicate", "leaks_example")
    rejected = tuple(RejectedRewrite("init", "0", reason, "<prompt>x") for reason in reasons)
    first = replace(result.history[0], rejected=rejected)
    result = replace(result, history=(first, *result.history[1:]))
    write_task_run(result, tmp_path / "run", job)
    [task] = read_run_folder(tmp_path / "run").tasks
    assert task.rejected_rewrites == {"leaks_example": 2, "duplicate": 1}
    [in_memory] = run_folder_from_results(tmp_path / "run", [result], [job], kind="task").tasks
    assert in_memory.rejected_rewrites == task.rejected_rewrites


def with_rejections(result, reasons_per_iteration):
    """`result` with each iteration's rejected rewrites replaced by ones of these reasons."""
    from dataclasses import replace

    from pmpo_ray.pmpo.records import RejectedRewrite

    history = tuple(
        replace(record, rejected=tuple(RejectedRewrite("init", "0", r, "x") for r in reasons))
        for record, reasons in zip(result.history, reasons_per_iteration, strict=True)
    )
    return replace(result, history=history)


def test_format_loss_share_counts_only_format_reasons_of_all_generated_rewrites(suite_run):
    from pmpo_ray.pmpo.records import format_loss_share

    _, _, [_, result] = suite_run  # two iterations: one rewrite scored, then none (duplicate)
    assert [len(record.hard_case_of) for record in result.history] == [1, 0]
    reasons = [("no_prompt_tag", "duplicate", "empty"), ("leaks_example", "no_prompt_tag")]
    # 3 format losses of 1 scored + 5 rejected rewrites
    assert format_loss_share(with_rejections(result, reasons).history) == 3 / 6
    assert format_loss_share(with_rejections(result, [(), ()]).history) == 0.0
    assert format_loss_share(()) is None  # no rewrite generated


def test_result_json_holds_the_format_loss_share(tmp_path, suite_run):
    _, [_, job], [_, result] = suite_run
    result = with_rejections(result, [("no_prompt_tag",), ("too_long", "empty")])
    write_task_run(result, tmp_path / "run", job)
    written = json.loads((tmp_path / "run" / layout.RESULT).read_text())
    assert written["format_loss_share"] == 2 / 4  # of 1 scored + 3 rejected rewrites
    [task] = read_run_folder(tmp_path / "run").tasks
    [in_memory] = run_folder_from_results(tmp_path / "run", [result], [job], kind="task").tasks
    assert task.format_loss_share == in_memory.format_loss_share == 2 / 4


def test_task_folder_is_replaced_only_when_asked(tmp_path, suite_run):
    _, [job, other_job], [result, other] = suite_run
    write_task_run(result, tmp_path / "run", job)
    with pytest.raises(ValueError, match="exists; choose another --out or pass --overwrite"):
        write_task_run(result, tmp_path / "run", job)
    with pytest.raises(ValueError, match="config is for task 'pairs', the result for 'navigate'"):
        write_task_run(result, tmp_path / "new", other_job)
    (tmp_path / "run" / "evaluation.json").write_text("{}")  # from an earlier evaluation
    write_task_run(other, tmp_path / "run", other_job, overwrite=True)
    assert read_run_folder(tmp_path / "run").tasks[0].task_id == "pairs"
    assert not (tmp_path / "run" / "evaluation.json").exists()  # the folder was replaced whole
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    with pytest.raises(ValueError, match="folder .*missing does not exist"):
        write_task_run(result, tmp_path / "missing" / "run", job)


def test_suite_folder_round_trip(tmp_path, suite_run):
    config, jobs, results = suite_run
    out = tmp_path / "suite"
    summary = write_suite(out, suite_run)

    assert json.loads((out / "suite.json").read_text()) == summary
    assert set(summary) == {"navigate", "pairs"}
    assert summary["pairs"]["best_prompt"] == results[1].best.text
    top_config = yaml.safe_load((out / "config.yaml").read_text())
    assert SuiteConfig.model_validate(top_config) == config  # the suite's own: the whole suite

    folder = read_run_folder(out)
    assert folder == run_folder_from_results(out, results, jobs)
    assert folder.kind == "suite" and [t.task_id for t in folder.tasks] == ["navigate", "pairs"]
    assert [t.path for t in folder.tasks] == [out / "tasks" / "navigate", out / "tasks" / "pairs"]
    assert folder.evaluation.max_examples == 5 and folder.prompt_format.role == "user"


def test_each_task_folder_holds_its_own_resolved_config(tmp_path, suite_run):
    config, _, _ = suite_run
    out = tmp_path / "suite"
    write_suite(out, suite_run)

    for entry in config.tasks:
        raw = yaml.safe_load((out / "tasks" / entry.task.name / "config.yaml").read_text())
        assert "tasks" not in raw and raw["task"]["name"] == entry.task.name
        job = OptimizeJobConfig.model_validate(raw)
        assert job == task_job_config(config, entry)
        assert job.optimizer == config.optimizer_for(entry)
        assert job.scorer == config.scorer and job.rewriter is None
    pairs = OptimizeJobConfig.model_validate(
        yaml.safe_load((out / "tasks" / "pairs" / "config.yaml").read_text())
    )
    assert (pairs.optimizer.iterations, pairs.optimizer.seed) == (2, 7)  # its own override

    # One task folder of a suite is a run folder on its own, as `pmpo evaluate` reads it.
    alone = read_run_folder(out / "tasks" / "pairs")
    assert alone.kind == "task" and alone.tasks == read_run_folder(out).tasks[1:]


def test_rewriter_pool_becomes_the_task_configs_rewriter():
    raw = dict(SUITE, rewriter={"engine": {"backend": "hf", "dtype": "float32"}})
    config = SuiteConfig.model_validate(raw)
    job = task_job_config(config, config.tasks[0])
    assert job.rewriter == config.rewriter and job.rewriter != job.scorer


def test_result_paths_list_the_job_outputs_and_never_a_users_file(tmp_path, suite_run):
    out = tmp_path / "suite"
    write_suite(out, suite_run)
    layout.state_path(out, 1).parent.mkdir()
    layout.state_path(out, 1).write_text("{}")
    layout.rounds_log_path(out).write_text('{"round": 1}\n')
    for name in ("report.md", "report.html", ".suite.json.x1y2.tmp"):
        (out / name).write_text("x")
    (out / "report_files").mkdir()
    (out / "report_files" / "rounds.png").write_bytes(b"png")
    (out / "tasks" / ".navigate.staging.abc123").mkdir()  # a crash mid-write left it
    (out / "tasks" / "navigate" / "evaluation.json").write_text("{}")
    # The user's own files: beside the outputs, inside tasks/, and a folder that is no task run.
    (out / "notes.txt").write_text("mine")
    (out / "tasks" / ".." / "mine.txt").write_text("mine")
    (out / "tasks" / "notes.txt").write_text("mine")
    (out / "tasks" / "scratch").mkdir()
    (out / "tasks" / "scratch" / "data.json").write_text("{}")

    expected = {
        "state",
        "rounds.jsonl",
        "suite.json",
        "config.yaml",
        "report.md",
        "report.html",
        "report_files",
        ".suite.json.x1y2.tmp",
        "tasks/navigate",
        "tasks/pairs",
        "tasks/.navigate.staging.abc123",
    }
    listed = layout.result_paths(out)
    assert {str(p.relative_to(out)) for p in listed} == expected
    assert all(p.resolve().is_relative_to(out.resolve()) for p in listed)

    assert remove_results(out) == listed
    left = {str(p.relative_to(out)) for p in out.rglob("*")}
    assert left == {"notes.txt", "mine.txt", "tasks", "tasks/notes.txt", "tasks/scratch"} | {
        "tasks/scratch/data.json"
    }
    assert layout.result_paths(out) == []
    assert layout.result_paths(tmp_path / "nowhere") == []


def test_suite_tasks_read_back_in_the_suites_order(tmp_path, suite_run):
    config, jobs, results = suite_run
    out = tmp_path / "suite"
    write_suite_tasks(out, results, jobs)
    write_suite_summary(out, config.model_dump(mode="json"), results[::-1])
    assert [t.task_id for t in read_run_folder(out).tasks] == ["pairs", "navigate"]


def test_a_staging_leftover_is_not_read_as_a_task(tmp_path, suite_run):
    out = tmp_path / "suite"
    write_suite(out, suite_run)
    shutil.copytree(out / "tasks" / "pairs", out / "tasks" / ".pairs.staging.abc123")
    assert [t.task_id for t in read_run_folder(out).tasks] == ["navigate", "pairs"]


def test_result_paths_remove_a_link_not_what_it_points_to(tmp_path):
    users = tmp_path / "elsewhere"
    users.mkdir()
    (users / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report_files").symlink_to(users, target_is_directory=True)
    assert layout.result_paths(out) == [out / "report_files"]
    remove_results(out)
    assert not (out / "report_files").exists() and (users / "keep.txt").is_file()


@pytest.mark.parametrize("task_id", ["..", ".", "a/b", "", ".hidden", "a\\b"])
def test_task_names_cannot_leave_the_tasks_folder(tmp_path, task_id):
    with pytest.raises(ValueError, match="plain folder name"):
        layout.task_dir(tmp_path, task_id)


def test_state_file_names(tmp_path):
    assert layout.state_path(tmp_path, 7) == tmp_path / "state" / "round-0007.json"
    assert layout.rounds_log_path(tmp_path) == tmp_path / "rounds.jsonl"
    layout.state_dir(tmp_path).mkdir()
    for index in (10, 2, 1):
        layout.state_path(tmp_path, index).write_text("{}")
    assert [p.name for p in layout.state_files(tmp_path)] == [
        "round-0001.json",
        "round-0002.json",
        "round-0010.json",
    ]


def test_truncated_result_json_names_the_file(tmp_path, suite_run):
    out = tmp_path / "suite"
    write_suite(out, suite_run)
    path = out / "tasks" / "pairs" / "result.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError) as error:
        read_run_folder(out)
    assert str(error.value).startswith(f"{path}: not valid JSON (")


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda d: (d / "result.json").write_text("[1]"),
            r"result\.json: Input should be an object$",
        ),
        (
            lambda d: (d / "best_prompt.json").write_text('{"text": 3}'),
            r"best_prompt\.json: field 'candidate_id': Field required \(and 4 more\)$",
        ),
        (
            lambda d: edit_json(d / "result.json", lambda r: r.update(best_loss="low")),
            r"pairs/result\.json: field 'best_loss': Input should be a valid number$",
        ),
        (
            lambda d: edit_json(d / "result.json", lambda r: r["work"].pop("wall_seconds")),
            r"pairs/result\.json: field 'work': wall_seconds missing$",
        ),
        (
            lambda d: edit_json(d / "result.json", lambda r: r.update(seed=True)),
            r"pairs/result\.json: field 'seed': Input should be a valid integer$",
        ),
        (lambda d: (d / "best_prompt.json").unlink(), r"incomplete task run, missing best_prompt"),
        (lambda d: (d / "config.yaml").write_text("task: [\n"), r"config\.yaml: not valid YAML"),
        (
            lambda d: (d / "config.yaml").write_text("task: {name: pairs}\n"),
            r"config\.yaml: field 'task\.data': Field required",
        ),
        (lambda d: (d / "config.yaml").unlink(), r"incomplete task run, missing config\.yaml"),
    ],
    ids=[
        "result-not-object",
        "best-prompt-fields",
        "result-type",
        "work-field",
        "result-bool",
        "no-best-prompt",
        "config-yaml",
        "config-field",
        "no-config",
    ],
)
def test_damaged_task_folder_names_file_and_field(tmp_path, suite_run, damage, message):
    out = tmp_path / "suite"
    write_suite(out, suite_run)
    damage(out / "tasks" / "pairs")
    with pytest.raises(ValueError, match=message):
        read_run_folder(out)


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_disagreeing_tasks_are_a_clear_error(tmp_path, suite_run):
    out = tmp_path / "suite"
    write_suite(out, suite_run)
    navigate_config = out / "tasks" / "navigate" / "config.yaml"
    original = navigate_config.read_text()

    # Evaluation serves a suite with one engine: the tasks must agree on it.
    raw = yaml.safe_load(original)
    raw["prompt_format"] = {"role": "system"}
    navigate_config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"pairs/config\.yaml: field 'prompt_format' differs"):
        read_run_folder(out)
    assert read_run_folder(out / "tasks" / "navigate").prompt_format.role == "system"
