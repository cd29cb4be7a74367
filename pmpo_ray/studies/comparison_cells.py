"""The study report's comparisons as text: changes from the initial prompt with their 95%
intervals (`−0.12 [−0.30, +0.05] within noise`), counts of wins outside the noise, and the full
method against each other variant (studies/intervals.py computes them)."""

from __future__ import annotations

from collections.abc import Sequence

from pmpo_ray.reports.interval_text import difference, shown
from pmpo_ray.reports.tables import DASH, Table
from pmpo_ray.studies import tables
from pmpo_ray.studies.intervals import Change, average_change, task_change

INTERVALS_NOTE = (
    "Δ columns are changes from the initial prompt with their 95% intervals: paired over the "
    "held-out examples (each is scored under both prompts and resampled with its pair; a "
    "variant's seeds are averaged per example first), and in the averages stratified by task "
    "(each task weighs the same). A change whose interval holds 0 is within noise, and only "
    "changes outside the noise count as wins, here and in the targets. Accuracy changes are "
    "in percentage points (pts). Rows without per-example values show bare differences of "
    "means and are counted on means."
)


def change_text(change: Change | None, share: bool = False) -> str:
    """A change with its interval; a bare difference of means where it has none."""
    if change is None:
        return DASH
    if change.ci95 is not None:
        return difference(change.change, change.ci95, share)
    return f"{shown(100 * change.change, 1)} pts" if share else shown(change.change, 3)


def wins_cell(wins: tuple | None) -> str:
    if wins is None:
        return DASH
    k, n, judged = wins
    return f"{k}/{n}" if judged else f"{k}/{n} (means)"


def task_change_cells(rows: Sequence[dict], task: str, variant: str, keys) -> list[str]:
    """Per figure key, the variant's change from the initial prompt on this task."""
    share = {"heldout_ce": False, "option_accuracy": True, "accuracy": True}
    return [change_text(task_change(rows, task, variant, key), share[key]) for key in keys]


def verdict(change: Change) -> str:
    if change.ci95 is None:
        return "means only"
    if change.noise:
        return "within noise"
    return f"{tables.FULL} lower" if change.ci95[1] < 0 else f"{tables.FULL} higher"


def versus_cells(rows: Sequence[dict], variants: Sequence[str]) -> Table | None:
    """The full method against each other variant on held-out CE: full minus the variant,
    over the tasks both ran (stratified paired interval); None without full or others."""
    tasks = tables.task_names(rows)
    out = []
    for variant in tables.shown_variants(variants)[1:]:
        if variant == tables.FULL:
            continue
        found = average_change(rows, tables.FULL, "heldout_ce", tasks, reference=variant)
        if found is not None:
            out.append((variant, str(found.tasks), change_text(found), verdict(found)))
    if not out:
        return None
    headers = ("variant", "tasks", f"{tables.FULL} − variant, held-out CE", "verdict")
    return Table(headers, tuple(out))
