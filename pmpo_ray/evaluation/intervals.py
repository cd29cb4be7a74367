"""95% confidence intervals of held-out figures and of their changes between prompts.

Method: a paired percentile bootstrap over held-out examples, seeded so a report reads the same
every time it is drawn.

- Paired: every held-out example is scored under every prompt, so a change between two prompts
  is measured per example (value under this prompt minus value under the reference) and the
  examples are resampled with their pair. The difference between examples (some questions are
  hard under any prompt) then cancels out; at the 24-50 held-out examples a task usually has,
  that variance dominates, and an unpaired interval would call nearly every change noise.
- Percentile bootstrap: accuracies are means of 0/1 values bounded in [0, 1] and a per-example
  cross-entropy is skewed (a few examples carry most of the loss), so the interval is read off
  the resampled means themselves rather than assumed symmetric around the mean (as mean ± 1.96
  standard errors would be).
- lm-evaluation-harness prints a standard error next to each figure; we print the 95% interval
  itself, so "the interval holds 0" (`within_noise`) is the whole test of a change.
- Averaged over tasks (a study), `stratified_paired_ci` resamples examples within each task and
  averages the tasks' mean differences, so each task keeps its weight and its own examples.

Pure functions over plain sequences (numpy's default_rng(seed)); nothing is rounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
# Resampled means are computed in chunks of at most this many drawn indices, so memory stays
# bounded whatever the number of examples.
CHUNK = 1 << 21


def _values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a flat sequence of numbers, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what}: no values (an interval needs at least one example)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: values must be finite (found NaN or infinity)")
    return array


def _resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The means of `resamples` resamples (with replacement) of `values`."""
    n = values.size
    step = max(1, CHUNK // n)
    means = np.empty(resamples)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[picks].mean(axis=1)
    return means


def _percentiles(means: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def mean_ci(
    values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `values` (one value per example)."""
    array = _values(values, "mean_ci")
    _check_resamples(resamples)
    if array.size == 1:
        return float(array[0]), float(array[0])
    return _percentiles(_resampled_means(array, resamples, np.random.default_rng(seed)))


def _differences(values: Sequence[float], reference: Sequence[float], what: str) -> np.ndarray:
    a, b = _values(values, f"{what}: values"), _values(reference, f"{what}: reference")
    if a.size != b.size:
        raise ValueError(
            f"{what}: {a.size} values against {b.size} reference values; a paired interval "
            "needs one of each per example, aligned by example"
        )
    return a - b


def paired_ci(
    values: Sequence[float],
    reference: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95% interval of mean(values - reference), resampling examples with their pair."""
    return mean_ci(_differences(values, reference, "paired_ci"), resamples=resamples, seed=seed)


def stratified_paired_ci(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95% interval of the mean over groups (tasks) of each group's mean paired difference;
    each resample draws examples within every group, so a group keeps its weight of 1/groups."""
    if not groups:
        raise ValueError("stratified_paired_ci: no groups")
    _check_resamples(resamples)
    differences = [
        _differences(values, reference, f"stratified_paired_ci: group {i}")
        for i, (values, reference) in enumerate(groups)
    ]
    if all(d.size == 1 for d in differences):
        point = float(np.mean([d[0] for d in differences]))
        return point, point
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for d in differences:
        total += d[0] if d.size == 1 else _resampled_means(d, resamples, rng)
    return _percentiles(total / len(differences))


def within_noise(ci: tuple[float, float]) -> bool:
    """Whether the interval holds 0: the change may be noise."""
    low, high = ci
    return low <= 0.0 <= high


def prompt_intervals(
    per_example: Mapping[str, Sequence[float] | None],
    initial: Mapping[str, Sequence[float] | None] | None,
) -> tuple[dict[str, tuple[float, float]], dict[str, dict]]:
    """One prompt's intervals from its per-example values (metric -> values, None where the
    metric was not measured): the 95% interval of each measured metric's mean, and, against
    the initial prompt's per-example values (None: this is the initial prompt), each metric
    measured under both as {"change": mean(values) - mean(initial), "ci95": paired interval}."""
    ci95 = {
        metric: mean_ci(values) for metric, values in per_example.items() if values is not None
    }
    vs_initial: dict[str, dict] = {}
    for metric, values in per_example.items():
        reference = None if initial is None else initial.get(metric)
        if values is None or reference is None:
            continue
        change = float(np.mean(_values(values, metric)) - np.mean(_values(reference, metric)))
        vs_initial[metric] = {"change": change, "ci95": paired_ci(values, reference)}
    return ci95, vs_initial
