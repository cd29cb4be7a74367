"""The study's changes with their 95% intervals: a variant against the initial prompt (or
against another variant) per task, paired over held-out examples, and averaged over tasks,
stratified by task (evaluation/intervals.py).

Each result row may carry `per_example`: figure -> one value per held-out example, aligned by
example across all rows of a task (None where not measured). A variant's seeds are averaged
per example first, so the interval is that of the variant's seed mean. Rows written before
per-example values existed still compare, on their means alone: a Change without interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean

from pmpo_ray.evaluation.intervals import paired_ci, stratified_paired_ci, within_noise

INITIAL = "initial"


def runs(rows: Sequence[dict], task: str, variant: str) -> list[dict]:
    return [r for r in rows if r["task"] == task and r["variant"] == variant]


def mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


@dataclass(frozen=True)
class Change:
    """A difference (variant minus reference) and its 95% interval; `ci95` None where the rows
    have no per-example values (a difference of means, not judged against noise)."""

    change: float
    ci95: tuple[float, float] | None
    tasks: int = 1

    @property
    def noise(self) -> bool:
        return self.ci95 is not None and within_noise(self.ci95)

    def better(self, lower: bool) -> bool | None:
        """Whether the change is an improvement outside the noise (the whole interval on the
        good side of 0); None where there is no interval to judge by."""
        if self.ci95 is None:
            return None
        return self.ci95[1] < 0 if lower else self.ci95[0] > 0


def per_example(chosen: Sequence[dict], key: str) -> list[float] | None:
    """The runs' per-example values of `key`, averaged over the runs that have them; None
    where none has. Runs of one task must hold the same number of examples."""
    found = [(r.get("per_example") or {}).get(key) for r in chosen]
    lists = [values for values in found if values is not None]
    if not lists:
        return None
    sizes = {len(values) for values in lists}
    if len(sizes) > 1:
        where = ", ".join(sorted({f"{r['task']}/{r['variant']}" for r in chosen}))
        raise ValueError(
            f"{where}: per-example {key} lists of different lengths {sorted(sizes)}; rows of one "
            "task must be aligned by held-out example"
        )
    return [fmean(column) for column in zip(*lists)]


def paired(rows: Sequence[dict], task: str, variant: str, key: str, reference: str):
    """(values, reference values) per example for one task, or None where either is missing."""
    values = per_example(runs(rows, task, variant), key)
    base = per_example(runs(rows, task, reference), key)
    return None if values is None or base is None else (values, base)


def point(rows: Sequence[dict], task: str, variant: str, key: str, reference: str):
    """The difference of the two seed means of `key` on one task; None where one is missing."""
    a = mean_or_none(r.get(key) for r in runs(rows, task, variant))
    b = mean_or_none(r.get(key) for r in runs(rows, task, reference))
    return None if a is None or b is None else a - b


def task_change(
    rows: Sequence[dict], task: str, variant: str, key: str, reference: str = INITIAL
) -> Change | None:
    """`variant` minus `reference` on `task`: paired over examples where both have per-example
    values, else the difference of means (no interval); None where one was not measured."""
    if variant == reference:
        return None
    pair = paired(rows, task, variant, key, reference)
    if pair is not None:
        return Change(fmean(pair[0]) - fmean(pair[1]), paired_ci(*pair))
    difference = point(rows, task, variant, key, reference)
    return None if difference is None else Change(difference, None)


def average_change(
    rows: Sequence[dict],
    variant: str,
    key: str,
    tasks: Sequence[str],
    reference: str = INITIAL,
) -> Change | None:
    """The mean over `tasks` (those where both were measured) of the per-task change, with a
    stratified paired interval where every such task has per-example values."""
    if variant == reference:
        return None
    measured = [t for t in tasks if point(rows, t, variant, key, reference) is not None]
    if not measured:
        return None
    pairs = [paired(rows, t, variant, key, reference) for t in measured]
    if all(pair is not None for pair in pairs):
        change = fmean(fmean(a) - fmean(b) for a, b in pairs)
        return Change(change, stratified_paired_ci(pairs), len(measured))
    differences = [point(rows, t, variant, key, reference) for t in measured]
    return Change(fmean(differences), None, len(measured))


def noise_wins(
    rows: Sequence[dict], variant: str, key: str, tasks: Sequence[str], lower: bool, tolerance
) -> tuple[int, int, bool]:
    """(k, N, judged): on how many of the N tasks where the initial prompt was measured the
    variant is better outside the noise (its interval wholly on the good side of 0). `judged`
    is False where some task has no per-example values: those tasks then count on means
    (`tolerance(change)` decides), as studies written before intervals were."""
    reference = [
        t for t in tasks if mean_or_none(r.get(key) for r in runs(rows, t, INITIAL)) is not None
    ]
    count, judged = 0, True
    for task in reference:
        change = task_change(rows, task, variant, key)
        if change is None:
            continue  # the variant has no value here: counts against it
        verdict = change.better(lower)
        if verdict is None:
            judged, verdict = False, tolerance(change.change)
        count += bool(verdict)
    return count, len(reference), judged
