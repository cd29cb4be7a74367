"""The ablation study's aggregation on small hand-checked rows: per task, on average, targets."""

import math

import pytest

from pmpo_ray.studies.tables import Stat, average_table, cell, changes, targets, task_table

VARIANTS = ["full", "ablate"]


def row(task, variant, seed, ce, option, accuracy, fmt="multiple_choice", same_as=None):
    return {
        "task": task,
        "variant": variant,
        "seed": seed,
        "format": fmt,
        "prompt": f"prompt of {variant}",
        "train_loss": 1.0,
        "heldout_ce": ce,
        "option_accuracy": option,
        "option_accuracy_norm": option,
        "accuracy": accuracy,
        "forward_passes": 0 if variant == "initial" else 600,
        "iterations": 0 if variant == "initial" else 3,
        "stop_reason": "budget",
        "same_as": same_as,
    }


def study_rows():
    """Tasks a and b are multiple choice, c is supervised (no option accuracy)."""
    return [
        row("a", "initial", None, 2.0, 0.50, 0.30),
        row("a", "full", 0, 1.0, 0.60, 0.40),
        row("a", "full", 1, 1.4, 0.70, None),
        row("a", "ablate", 0, 1.5, 0.50, 0.30),
        row("a", "ablate", 1, 1.5, 0.40, 0.30),
        row("b", "initial", None, 1.0, 0.65, None),
        row("b", "full", 0, 0.9, 0.60, None),
        row("b", "full", 1, 0.7, 0.70, None),
        row("b", "ablate", 0, 1.1, 0.70, None),
        row("b", "ablate", 1, 1.3, 0.70, None),
        row("c", "initial", None, 3.0, None, 0.10, "supervised"),
        row("c", "full", 0, 2.0, None, 0.20, "supervised"),
        row("c", "full", 1, 2.6, None, 0.30, "supervised"),
        row("c", "ablate", 0, 2.0, None, 0.20, "supervised", same_as="full"),
        row("c", "ablate", 1, 2.6, None, 0.30, "supervised", same_as="full"),
    ]


def close(stat, mean, spread, n):
    assert stat is not None
    assert stat.mean == pytest.approx(mean) and stat.spread == pytest.approx(spread)
    assert stat.n == n


def test_cell_is_mean_and_sample_spread_skipping_none():
    close(cell([1.0, None, 3.0]), 2.0, math.sqrt(2), 2)  # sample std: (1-2)²+(3-2)² over 1
    assert cell([5.0]) == Stat(5.0, 0.0, 1)
    assert cell([None, None]) is None
    assert cell([]) is None


def test_task_table_has_one_row_per_variant_initial_first():
    table = task_table(study_rows(), "a", VARIANTS)
    assert [e["variant"] for e in table] == ["initial", "full", "ablate"]
    initial, full, ablate = table
    close(initial["heldout_ce"], 2.0, 0.0, 1)
    close(full["heldout_ce"], 1.2, math.sqrt(0.08), 2)  # 1.0 and 1.4
    close(full["option_accuracy"], 0.65, math.sqrt(0.005), 2)
    close(full["accuracy"], 0.4, 0.0, 1)  # the second seed has no generation accuracy
    close(ablate["option_accuracy"], 0.45, math.sqrt(0.005), 2)
    assert full["seeds"] == 2 and full["forward_passes"] == 600 and full["iterations"] == 3
    assert initial["forward_passes"] == 0 and initial["seeds"] == 1


def test_task_table_keeps_unmeasured_metrics_and_missing_variants_as_none():
    table = task_table(study_rows(), "c", VARIANTS + ["never_run"])
    assert all(e["option_accuracy"] is None for e in table)  # supervised task
    missing = table[-1]
    assert missing["variant"] == "never_run" and missing["seeds"] == 0
    assert missing["heldout_ce"] is None and missing["forward_passes"] is None
    assert table[2]["same_as"] == "full" and table[1]["same_as"] is None


def test_initial_listed_in_variants_is_shown_once_and_first():
    table = task_table(study_rows(), "a", ["full", "initial", "ablate"])
    assert [e["variant"] for e in table] == ["initial", "full", "ablate"]


def test_average_table_means_over_tasks_and_spread_over_seeds():
    initial, full, ablate = average_table(study_rows(), VARIANTS)
    # task means 1.2, 0.8, 2.3; per-seed averages (1.0+0.9+2.0)/3 and (1.4+0.7+2.6)/3
    close(full["heldout_ce"], 4.3 / 3, (4.7 / 3 - 1.3) / math.sqrt(2), 2)
    # multiple-choice tasks only: 0.65 and 0.65; per seed 0.60 and 0.70
    close(full["option_accuracy"], 0.65, 0.1 / math.sqrt(2), 2)
    assert full["option_accuracy_tasks"] == 2 and full["heldout_ce_tasks"] == 3
    # generation accuracy measured on a (0.4, seed 0 only) and c (0.25): b never measured
    assert full["accuracy"].mean == pytest.approx(0.325) and full["accuracy_tasks"] == 2
    close(initial["heldout_ce"], 2.0, 0.0, 1)
    assert ablate["heldout_ce"].mean == pytest.approx(5.0 / 3)
    assert full["seeds"] == 2 and initial["seeds"] == 1 and full["forward_passes"] == 600


def test_average_table_counts_against_the_initial_prompt_on_means_without_per_example():
    initial, full, ablate = average_table(study_rows(), VARIANTS)
    assert full["ce_below_initial"] == (3, 3, False)  # False: judged on means, no intervals
    assert ablate["ce_below_initial"] == (2, 3, False)  # b: 1.2 is above the initial 1.0
    # b: full's (0.6 + 0.7) / 2 ties the initial 0.65, which counts as "at least" although
    # in floating point it comes out as 0.6499999999999999
    assert full["option_above_initial"] == (2, 2, False)
    assert ablate["option_above_initial"] == (1, 2, False)  # a: 0.45 < 0.50
    gain = full["option_accuracy_change"]
    assert 100 * gain.change == pytest.approx(7.5) and gain.ci95 is None  # (+15 + 0) / 2
    assert gain.tasks == 2
    assert ablate["option_accuracy_change"].change == pytest.approx(0.0)  # (-5 + 5) / 2
    assert full["heldout_ce_change"].change == pytest.approx(-1.7 / 3)
    assert initial["ce_below_initial"] is None and initial["option_accuracy_change"] is None


def test_option_accuracy_averages_cover_multiple_choice_tasks_only():
    rows = study_rows()
    for r in rows:
        if r["task"] == "c":
            r["option_accuracy"] = 0.0  # a supervised row that carries a value anyway
    full = average_table(rows, VARIANTS)[1]
    close(full["option_accuracy"], 0.65, 0.1 / math.sqrt(2), 2)  # spread over a and b only
    assert full["option_accuracy_tasks"] == 2 and full["option_above_initial"] == (2, 2, False)


def test_a_task_the_variant_did_not_run_counts_against_it():
    rows = [r for r in study_rows() if not (r["task"] == "b" and r["variant"] == "full")]
    full = average_table(rows, VARIANTS)[1]
    assert full["ce_below_initial"] == (2, 3, False) and full["heldout_ce_tasks"] == 2


def test_changes_are_per_task_differences_from_the_initial_prompt():
    ce = changes(study_rows(), VARIANTS, "heldout_ce")
    assert list(ce) == VARIANTS
    assert ce["full"] == pytest.approx([-0.8, -0.2, -0.7])
    option = changes(study_rows(), VARIANTS, "option_accuracy", 100.0)
    assert option["ablate"] == pytest.approx([-5.0, 5.0])


def test_targets_met():
    judged = targets(study_rows(), VARIANTS)
    assert len(judged) == 3
    assert [met for _, _, met in judged] == [True, True, True]
    assert "3/3 tasks" in judged[0][1] and "+7.5 points" in judged[1][1]
    assert "on means (no per-example values)" in judged[0][1]  # old rows: no intervals


def test_ce_target_missed_below_ninety_percent():
    rows = study_rows()
    rows[6]["heldout_ce"] = rows[7]["heldout_ce"] = 1.2  # full on b: above the initial 1.0
    ce_target = targets(rows, VARIANTS)[0]
    assert ce_target[2] is False and "2/3 tasks" in ce_target[1]


def test_option_target_missed_on_a_small_gain():
    rows = study_rows()
    rows[1]["option_accuracy"] = rows[2]["option_accuracy"] = 0.54  # gain on a: +4 points
    option_target = targets(rows, VARIANTS)[1]
    assert option_target[2] is False and "+2.0 points" in option_target[1]  # (4 + 0) / 2


def test_option_target_missed_on_too_few_tasks_at_least_initial():
    rows = study_rows()
    rows[6]["option_accuracy"] = rows[7]["option_accuracy"] = 0.5  # b: -15 points
    rows[1]["option_accuracy"] = rows[2]["option_accuracy"] = 0.9  # a: +35 points
    option_target = targets(rows, VARIANTS)[1]
    assert option_target[2] is False and "1/2" in option_target[1]


def test_ranking_target_missed_when_an_ablation_has_lower_mean_ce():
    rows = study_rows()
    for r in rows:
        if r["variant"] == "ablate":
            r["heldout_ce"] = 0.5
    ranking = targets(rows, VARIANTS)[2]
    assert ranking[2] is False and "lower than full: ablate" in ranking[1]


def test_targets_missed_without_a_full_run():
    rows = [r for r in study_rows() if r["variant"] != "full"]
    judged = targets(rows, VARIANTS)
    assert [met for _, _, met in judged] == [False, False, False]
    assert all(measured == "variant 'full' was not run" for _, measured, _ in judged)
