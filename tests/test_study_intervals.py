"""The study's paired intervals from per-example values: per task, averaged over tasks, full
against the other variants, and targets that count only wins outside the noise."""

import numpy as np
import pytest

from pmpo_ray.studies.comparison_cells import versus_cells
from pmpo_ray.studies.intervals import average_change, per_example, task_change
from pmpo_ray.studies.report import build_blocks
from pmpo_ray.studies.tables import average_table, targets
from tests.test_study_tables import row

N = 30
VARIANTS = ["full", "ablate"]


def with_examples(r, ce, option):
    ce, option = [float(v) for v in ce], [float(v) for v in option]
    r = dict(r, heldout_ce=float(np.mean(ce)), option_accuracy=float(np.mean(option)))
    r["per_example"] = {"heldout_ce": ce, "option_accuracy": option, "accuracy": None}
    return dict(r, accuracy=None)


def noisy_rows():
    """Task a: full lowers CE by 0.5 on every example (outside the noise); task b: full's
    mean CE is a little lower but the per-example changes scatter around 0 (within noise).
    ablate: no better than the initial prompt anywhere."""
    rng = np.random.default_rng(0)
    rows = []
    for task, shift in (("a", -0.5), ("b", -0.02)):
        base = rng.uniform(1.0, 3.0, N)
        gold = (rng.uniform(size=N) < 0.5).astype(float)
        rows.append(with_examples(row(task, "initial", None, 0, 0, 0), base, gold))
        for seed in (0, 1):
            jitter = rng.normal(0, 0.05 if task == "a" else 0.4, N)
            option = np.maximum(gold, rng.uniform(size=N) < (0.6 if task == "a" else 0.1))
            full = with_examples(row(task, "full", seed, 0, 0, 0), base + shift + jitter, option)
            ablate = with_examples(row(task, "ablate", seed, 0, 0, 0), base + jitter, gold)
            rows += [full, ablate]
    return rows


def test_seeds_are_averaged_per_example_before_the_paired_interval():
    rows = noisy_rows()
    seeds = [r for r in rows if r["task"] == "a" and r["variant"] == "full"]
    averaged = per_example(seeds, "heldout_ce")
    assert averaged == pytest.approx(
        [(x + y) / 2 for x, y in zip(*(s["per_example"]["heldout_ce"] for s in seeds))]
    )
    a = task_change(rows, "a", "full", "heldout_ce")
    seed_mean = np.mean([s["heldout_ce"] for s in seeds])
    assert a.change == pytest.approx(seed_mean - rows[0]["heldout_ce"])
    assert a.ci95[1] < 0 and not a.noise and a.better(lower=True)
    b = task_change(rows, "b", "full", "heldout_ce")
    assert b.change < 0 and b.noise and not b.better(lower=True)  # lower mean, within noise
    assert task_change(rows, "a", "initial", "heldout_ce") is None


def test_the_average_is_stratified_over_tasks():
    rows = noisy_rows()
    average = average_change(rows, "full", "heldout_ce", ["a", "b"])
    per_task = [task_change(rows, t, "full", "heldout_ce").change for t in ("a", "b")]
    assert average.change == pytest.approx(np.mean(per_task)) and average.tasks == 2
    low, high = average.ci95
    assert low < average.change < high < 0


def test_only_wins_outside_the_noise_count():
    rows = noisy_rows()
    _, full, ablate = average_table(rows, VARIANTS)
    assert full["ce_below_initial"] == (1, 2, True)  # b's lower mean is within noise
    assert ablate["ce_below_initial"][:2] == (0, 2)
    judged = targets(rows, VARIANTS)
    assert judged[0][2] is False and "1/2 tasks (50%) below outside the noise" in judged[0][1]
    # Counted on means, as before per-example values, b would have been a win too.
    means_only = [{k: v for k, v in r.items() if k != "per_example"} for r in rows]
    assert average_table(means_only, VARIANTS)[1]["ce_below_initial"] == (2, 2, False)


def test_full_against_each_other_variant():
    rows = noisy_rows()
    table = versus_cells(rows, VARIANTS)
    [(variant, tasks, text, verdict)] = table.rows
    assert (variant, tasks, verdict) == ("ablate", "2", "full lower")
    assert text.startswith("−0.2") and "[" in text and "within noise" not in text
    ranking = targets(rows, VARIANTS)[2]
    assert ranking[2] is True and "none lower outside the noise" in ranking[1]


def test_misaligned_examples_are_a_clear_error():
    rows = noisy_rows()
    rows[1]["per_example"]["heldout_ce"] = rows[1]["per_example"]["heldout_ce"][:-1]
    with pytest.raises(ValueError, match="aligned by held-out example"):
        task_change(rows, "a", "full", "heldout_ce")


def test_report_shows_intervals_and_within_noise():
    from pmpo_ray.reports.markdown import render_markdown

    markdown = render_markdown(build_blocks(noisy_rows(), VARIANTS, {}, {}, {}))
    markdown = markdown.replace("\\[", "[").replace("\\]", "]")
    task_b = markdown[markdown.index("## Task b") :]
    full_b = next(line for line in task_b.splitlines() if line.startswith("| full |"))
    assert "within noise" in full_b.split("|")[4]  # Δ CE vs initial
    average = next(line for line in markdown.splitlines() if line.startswith("| full | 2 |"))
    assert "| 1/2 |" in average and "(means)" not in average
    assert "### full against each other variant" in markdown
