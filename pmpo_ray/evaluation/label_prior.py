"""Label-prior collapse on multiple-choice tasks: how often a prompt makes the model choose each
option label, against how often that label is the gold answer.

A prompt can raise option accuracy by pushing the model towards the most frequent gold label
(say "(A)" or "Yes") instead of towards reading the question; its choices then pile up on one
label. `over_chosen` names the labels chosen on more than COLLAPSE_FACTOR times their gold
share, which the report flags. Pure functions over plain values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

COLLAPSE_FACTOR = 2.0


def shares(labels: Sequence[str | None]) -> dict[str, float]:
    """label -> its share of the examples, keys sorted. None (no choice: a tie at the top, no
    options) is left out of the labels but counted in the denominator."""
    if not labels:
        return {}
    counts = Counter(label for label in labels if label is not None)
    return {label: counts[label] / len(labels) for label in sorted(counts)}


def over_chosen(
    choices: Mapping[str, float], gold: Mapping[str, float], factor: float = COLLAPSE_FACTOR
) -> list[str]:
    """The labels chosen on more than `factor` times their gold share, sorted; a label that is
    never gold but is chosen at all counts."""
    return sorted(label for label, share in choices.items() if share > factor * gold.get(label, 0))
