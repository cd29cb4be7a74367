"""The report's 95% intervals, paired changes from the initial prompt and the label-prior table,
drawn from an evaluation.json that carries them."""

import json
from pathlib import Path

from pmpo_ray.reports.build import write_report
from pmpo_ray.reports.interval_text import difference, figure, interval
from tests.test_report import add_option_accuracy, make_suite, toy_task, write_evaluation

INTERVALS = {  # prompt -> (ci95, vs_initial)
    "initial": (
        {"heldout_ce": [1.8, 2.2], "accuracy": [0.3, 0.7], "option_accuracy": [0.1, 0.45]},
        {},
    ),
    "optimized": (
        {"heldout_ce": [0.85, 1.15], "accuracy": [0.55, 0.9], "option_accuracy": [0.3, 0.7]},
        {
            "heldout_ce": {"change": -1.0, "ci95": [-1.2, -0.8]},
            "accuracy": {"change": 0.25, "ci95": [-0.05, 0.5]},
            "option_accuracy": {"change": 0.25, "ci95": [0.05, 0.45]},
        },
    ),
}
GOLD = {"(A)": 0.25, "(B)": 0.25, "(C)": 0.5}
CHOICES = {
    "initial": {"(A)": 0.25, "(B)": 0.25, "(C)": 0.5},
    "optimized": {"(A)": 0.7, "(C)": 0.2, "(D)": 0.05},  # 5% of examples: a tie, no choice
}


def add_intervals(folder: Path) -> None:
    path = folder / "evaluation.json"
    evaluation = json.loads(path.read_text())
    for prompt in evaluation["prompts"]:
        ci95, vs_initial = INTERVALS.get(prompt["name"], ({}, {}))
        prompt.update(ci95=ci95, vs_initial=vs_initial, choices=CHOICES.get(prompt["name"]))
    evaluation["gold_shares"] = GOLD
    path.write_text(json.dumps(evaluation))


def choice_suite(tmp_path):
    out = make_suite(tmp_path / "suite", [toy_task("choice", fmt="multiple_choice")])
    folder = out / "tasks" / "choice"
    write_evaluation(folder, fmt="multiple_choice")
    add_option_accuracy(folder, {"initial": (0.25, 0.5), "optimized": (0.5, 1.0)})
    add_intervals(folder)
    return write_report(out)


def test_figures_and_changes_read_with_their_intervals():
    assert figure(1.263, (1.1, 1.43), share=False) == "1.263 [1.10, 1.43]"
    assert figure(0.75, (0.62, 0.88), share=True) == "75.0% [62, 88]"
    assert figure(0.75, None, share=True) is None
    assert difference(-0.12, (-0.3, 0.05), share=False) == "−0.12 [−0.30, +0.05] within noise"
    assert difference(-0.012, (-0.03, -0.004), share=False) == "−0.012 [−0.030, −0.004]"
    assert difference(0.125, (0.042, 0.208), share=True) == "+12.5 pts [+4, +21]"
    assert interval((0.5, 0.53), share=True) == "[50.0, 53.0]"


def unescaped(path: Path) -> str:
    """The Markdown with its escaped brackets (\\[, as Markdown needs them) read back."""
    return path.read_text().replace("\\[", "[").replace("\\]", "]")


def test_tables_show_intervals_and_within_noise(tmp_path):
    files = choice_suite(tmp_path)
    markdown = unescaped(files.markdown)
    assert "<td>2.0000 → 1.0000 (−1.00 [−1.20, −0.80])</td>" in files.html.read_text()
    lines = markdown.splitlines()
    task_row = next(line for line in lines if line.startswith("| choice |"))
    assert "| 2.0000 → 1.0000 (−1.00 [−1.20, −0.80]) |" in task_row
    assert "| 50.0% → 75.0% (+25.0 pts [−5, +50] within noise) |" in task_row
    assert "| 25.0% → 50.0% (+25.0 pts [+5, +45]) |" in task_row
    initial = next(line for line in lines if line.startswith("| initial | 2.0"))
    assert "| 2.000 [1.80, 2.20] | 50.0% [30, 70] | 25.0% [10, 45] | 50.0% |" in initial
    changes = next(line for line in lines if line.startswith("| optimized | −"))
    within = "+25.0 pts [−5, +50] within noise"
    assert changes == f"| optimized | −1.00 [−1.20, −0.80] | {within} | +25.0 pts [+5, +45] |"
    assert "| baseline: no instruction | — | — | — |" in markdown  # no paired changes written
    assert "| change from initial | Δ held-out CE |" in markdown
    assert "a change whose interval holds 0 is within noise" in markdown


def test_label_prior_table_and_collapse_flag(tmp_path):
    files = choice_suite(tmp_path)
    markdown = files.markdown.read_text()
    assert "### Option labels chosen vs gold" in markdown
    assert "| option label | gold | chosen: initial | chosen: optimized |" in markdown
    assert "| (A) | 25.0% | 25.0% | 70.0% |" in markdown
    assert "| (D) | 0.0% | — | 5.0% |" not in markdown  # a choice share, never a dash
    assert "| (D) | 0.0% | 0.0% | 5.0% |" in markdown  # chosen, never gold
    assert "| none (tie at the top) | — | 0.0% | 5.0% |" in markdown
    flags = [line for line in markdown.splitlines() if line.startswith("Label-prior collapse?")]
    assert len(flags) == 1  # the initial prompt follows the gold shares
    assert "optimized prompt chooses (A) on 70.0% of examples (gold 25.0%)" in flags[0]
    assert "(D) on 5.0% of examples (gold 0.0%)" in flags[0]
    assert "Label-prior collapse? The optimized prompt" in files.html.read_text()


def test_no_flag_when_choices_follow_gold(tmp_path):
    CHOICES["optimized"], saved = dict(GOLD), CHOICES["optimized"]
    try:
        markdown = choice_suite(tmp_path).markdown.read_text()
    finally:
        CHOICES["optimized"] = saved
    assert "Label-prior collapse?" not in markdown
    assert "No prompt chooses any option label on more than 2× its gold share." in markdown


def test_pmpo_evaluate_prints_intervals_changes_and_the_label_flag():
    from pmpo_ray.commands.evaluate import summary_table

    def entry(name, ce):
        ci95, vs_initial = INTERVALS[name]
        return {
            "name": name,
            "heldout_ce": ce,
            "heldout_loss": ce,
            "accuracy": 0.5,
            "pairwise_accuracy": None,
            "option_accuracy": 0.5,
            "option_accuracy_norm": 0.5,
            "ci95": ci95,
            "vs_initial": vs_initial,
            "choices": CHOICES[name],
        }

    result = {"prompts": [entry("initial", 2.0), entry("optimized", 1.0)], "gold_shares": GOLD}
    lines = summary_table({"choice": result}).splitlines()
    assert "1.000 [0.85, 1.15]" in lines[2] and lines[2].split()[-2:] == ["50%", "50%"]
    change = next(line for line in lines if line.startswith("  choice / optimized:"))
    assert "CE −1.00 [−1.20, −0.80]" in change
    assert "accuracy +25.0 pts [−5, +50] within noise" in change
    flag = next(line for line in lines if line.startswith("label-prior collapse?"))
    assert "choice / optimized chooses (A) 70% (gold 25%), (D) 5% (gold 0%)" in flag
    assert not any("initial chooses" in line for line in lines)
