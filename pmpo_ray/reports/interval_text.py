"""Figures and changes with their 95% intervals as short text, for the reports, the study and
`pmpo evaluate`'s printout: `1.263 [1.10, 1.43]`, `75.0% [58, 90]`,
`−0.12 [−0.30, +0.05] within noise`, `+12.5 pts [+4.2, +21]`.

Losses (cross-entropy, the objective's loss) are shown as they are; accuracies (shares) in
percent, and their changes in percentage points. A change whose interval holds 0 is said to be
within noise (evaluation/intervals.py's `within_noise`).
"""

from __future__ import annotations

import math

from pmpo_ray.evaluation.intervals import within_noise

LOSSES = ("heldout_ce", "heldout_loss")  # the other figures are shares, shown in percent
WITHIN_NOISE = "within noise"
MINUS = "\u2212"


def is_share(metric: str) -> bool:
    return metric not in LOSSES


def signed(text: str) -> str:
    """A typographic minus, which does not wrap away from its number."""
    return text.replace("-", MINUS)


def shown(value: float, digits: int, sign: bool = True) -> str:
    """`value` to `digits` decimals, signed; a value that rounds to 0 is +0, never −0."""
    value = round(value, digits) + 0.0
    return signed(f"{value:{'+' if sign else ''}.{digits}f}")


def bound_digits(low: float, high: float) -> int:
    """Decimals that show an interval's width to about two figures: at least 0 for values in
    percent or points, and never more than 3."""
    width = abs(high - low)
    if width == 0 or not math.isfinite(width):
        return 1
    return max(0, min(3, 1 - math.floor(math.log10(width))))


def interval(ci, share: bool = False, sign: bool = False) -> str:
    """`[1.10, 1.43]`; shares scaled to percent (or points)."""
    scale = 100.0 if share else 1.0
    low, high = scale * ci[0], scale * ci[1]
    digits = bound_digits(low, high)
    if not share:
        digits = max(2, digits)
    return f"[{shown(low, digits, sign)}, {shown(high, digits, sign)}]"


def figure(value: float | None, ci, share: bool, digits: int = 3) -> str | None:
    """A figure with its interval (`1.263 [1.10, 1.43]`, `75.0% [58, 90]`); None where there is
    no interval, so the caller keeps its own plain format."""
    if value is None or ci is None:
        return None
    point = f"{100 * value:.1f}%" if share else f"{value:.{digits}f}"
    return f"{point} {interval(ci, share)}"


def difference(change: float, ci, share: bool) -> str:
    """A change with its interval; `within noise` where the interval holds 0."""
    scale = 100.0 if share else 1.0
    digits = 1 if share else max(2, bound_digits(ci[0], ci[1]))
    unit = " pts" if share else ""
    text = shown(scale * change, digits) + f"{unit} {interval(ci, share, sign=True)}"
    return f"{text} {WITHIN_NOISE}" if within_noise(tuple(ci)) else text


def score_interval(score, metric: str):
    """A prompt entry's 95% interval of one figure, None where it has none."""
    return (getattr(score, "ci95", None) or {}).get(metric)


def score_difference(score, metric: str):
    """A prompt entry's paired change from the initial prompt (`.change`, `.ci95`), or None."""
    return (getattr(score, "vs_initial", None) or {}).get(metric)


def difference_text(score, metric: str) -> str | None:
    found = score_difference(score, metric) if score is not None else None
    if found is None:
        return None
    return difference(found.change, found.ci95, is_share(metric))
