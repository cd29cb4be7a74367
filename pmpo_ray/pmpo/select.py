"""Choose what PMPO works on next: the hard cases a prompt is rewritten from, and which
prompts survive an iteration.

The selection rules decide whether the optimizer ever accepts a change, so they live apart
from the loop as plain functions over plain records. Ties always favour what is already
there: a rewrite must be strictly better to replace a prompt, which keeps a run from
drifting between equally good prompts and makes "no improvement" well defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Candidate:
    candidate_id: str
    text: str
    loss: float
    parent_id: str | None
    iteration: int


def _rank(loss: float) -> float:
    # A NaN loss (a prompt that could not be scored) must rank worst, never compare as a tie.
    return math.inf if math.isnan(loss) else loss


def hard_cases(losses: Mapping[str, float], k: int) -> list[str]:
    """The k example ids with the highest loss, highest first; ties keep the mapping's order."""
    if k < 1 or k > len(losses):
        raise ValueError(
            f"k must be between 1 and the number of examples ({len(losses)}); got k={k}"
        )
    # sorted() is stable, so equal losses stay in mapping order. NaN ranks as the hardest case.
    ordered = sorted(losses, key=lambda example_id: -_rank(losses[example_id]))
    return ordered[:k]


def best_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """The lowest-loss candidate; on a tie the earliest wins, so an incumbent listed first stays."""
    if not candidates:
        raise ValueError("best_candidate needs at least one candidate; got none")
    # min() returns the first of equal keys.
    return min(candidates, key=lambda candidate: _rank(candidate.loss))


def update_population(
    population: Sequence[Candidate], newcomers: Sequence[Candidate], size: int
) -> tuple[Candidate, ...]:
    """The top-`size` prompts by loss, lowest first, one per (whitespace-stripped) text.

    Members are listed before newcomers and the sort is stable, so a newcomer only displaces
    a member with a strictly higher loss, and a newcomer repeating a member's text is dropped
    unless strictly better. With size=1 this is the paper's greedy rule.
    """
    if size < 1:
        raise ValueError(f"population size must be at least 1; got size={size}")
    ranked = sorted([*population, *newcomers], key=lambda candidate: _rank(candidate.loss))
    kept: list[Candidate] = []
    texts: set[str] = set()
    for candidate in ranked:
        # The first of a text in rank order is its lowest loss, the earliest listed on a tie.
        if candidate.text.strip() not in texts:
            texts.add(candidate.text.strip())
            kept.append(candidate)
    return tuple(kept[:size])


def improved(old: Sequence[Candidate], new: Sequence[Candidate]) -> bool:
    """Whether the best loss of `new` is strictly lower than the best loss of `old`.

    An empty `new` offers nothing better, so it is False; an empty `old` has no loss to beat.
    """
    if not old:
        raise ValueError("improved needs the old population to be non-empty; got none")
    if not new:
        return False
    return _rank(best_candidate(new).loss) < _rank(best_candidate(old).loss)
