"""Turn scored rows into the losses PMPO minimizes.

The scoring engines only report the log-probability of each continuation; what counts as a
good prompt is decided here. Three objectives are supported: the paper's cross-entropy of the
reference answer, a pairwise preference loss for tasks that come with rejected answers
(multiple-choice distractors, preference pairs), and their sum. Keeping this pure arithmetic
over plain values lets the optimizer loop be tested without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.tasks.format_specs import FORMAT_SPECS, format_spec

Reduction = Literal["mean", "sum"]
Objective = Literal["ce", "preference", "ce_plus_preference"]
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
# Every objective but plain cross-entropy has the preference term, which compares the reference
# with rejected answers, so those must be scored too.
NEEDS_REJECTED: tuple[Objective, ...] = tuple(o for o in OBJECTIVES if o != "ce")

SCORED_COLUMNS = ("candidate_id", "example_id", "weight", "logprob_sum", "n_tokens")


def example_ce(logprob_sum: float, n_tokens: int, reduction: Reduction) -> float:
    """Cross-entropy of one reference answer: nats per token ("mean") or in total ("sum",
    the paper's formula, which favours prompts that make answers short)."""
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive to compute a cross-entropy; got {n_tokens}")
    if reduction == "mean":
        return -logprob_sum / n_tokens
    if reduction == "sum":
        return -logprob_sum
    raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")


def softplus(x: float) -> float:
    """log(1 + exp(x)) without overflow for large x or lost precision for very negative x."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def preference_loss(
    chosen_logprob: float, rejected_logprobs: Sequence[float], beta: float = 1.0
) -> float:
    """Mean over rejected answers of -log sigmoid(beta * (s_chosen - s_rejected)).

    -log sigmoid(x) == softplus(-x), which stays finite where the naive form would take the
    log of an underflowed sigmoid.
    """
    if not rejected_logprobs:
        raise ValueError("preference_loss needs at least one rejected answer; got none")
    terms = [softplus(-beta * (chosen_logprob - rejected)) for rejected in rejected_logprobs]
    return sum(terms) / len(terms)


def pairwise_accuracy(chosen_logprob: float, rejected_logprobs: Sequence[float]) -> float:
    """Share of rejected answers the model ranks strictly below the chosen one."""
    if not rejected_logprobs:
        raise ValueError("pairwise_accuracy needs at least one rejected answer; got none")
    wins = sum(1 for rejected in rejected_logprobs if rejected < chosen_logprob)
    return wins / len(rejected_logprobs)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """Each row's index into the column's distinct values, and those values in first-seen
    order."""
    values = pc.unique(column)
    return pc.index_in(column, value_set=values).to_numpy(), values.to_pylist()


@dataclass(frozen=True)
class _Groups:
    """The (candidate, example) pairs of a scored table, in first-seen order, and each row's
    pair: what every objective reduces over, found with array operations."""

    of_row: np.ndarray  # row -> its pair's index
    pairs: list[tuple[str, str]]  # pair index -> (candidate id, example id)
    reference_row: np.ndarray  # pair index -> its one weight > 0 row

    @classmethod
    def of(cls, scored: pa.Table) -> _Groups:
        candidates, candidate_ids = _codes(scored.column("candidate_id"))
        examples, example_ids = _codes(scored.column("example_id"))
        keys = candidates.astype(np.int64) * len(example_ids) + examples
        _, first_row, inverse = np.unique(keys, return_index=True, return_inverse=True)
        seen_order = np.argsort(first_row, kind="stable")
        rank = np.empty_like(seen_order)
        rank[seen_order] = np.arange(len(seen_order))
        of_row = rank[inverse]
        pairs = [
            (candidate_ids[candidates[row]], example_ids[examples[row]])
            for row in first_row[seen_order]
        ]
        return cls(of_row, pairs, cls._references(scored, of_row, pairs))

    @staticmethod
    def _references(scored: pa.Table, of_row: np.ndarray, pairs: list) -> np.ndarray:
        is_reference = scored.column("weight").to_numpy() > 0
        counts = np.bincount(of_row[is_reference], minlength=len(pairs))
        wrong = np.flatnonzero(counts != 1)
        if len(wrong):
            candidate_id, example_id = pairs[wrong[0]]
            raise ValueError(
                f"candidate {candidate_id!r}, example {example_id!r}: expected exactly one "
                f"reference row (weight > 0); found {counts[wrong[0]]}"
            )
        reference_row = np.empty(len(pairs), dtype=np.int64)
        reference_row[of_row[is_reference]] = np.flatnonzero(is_reference)
        return reference_row


def _cross_entropies(scored: pa.Table, groups: _Groups, reduction: Reduction) -> np.ndarray:
    """Each pair's reference cross-entropy (example_ce, over whole arrays)."""
    logprob_sum = scored.column("logprob_sum").to_numpy()[groups.reference_row]
    n_tokens = scored.column("n_tokens").to_numpy()[groups.reference_row]
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    if np.any(n_tokens <= 0):
        bad = int(n_tokens[n_tokens <= 0][0])
        raise ValueError(f"n_tokens must be positive to compute a cross-entropy; got {bad}")
    return -logprob_sum / n_tokens if reduction == "mean" else -logprob_sum


def _preference_losses(scored: pa.Table, groups: _Groups, beta: float) -> list[float]:
    """Each pair's preference loss over its rejected rows, term by term as preference_loss
    sums them (so the floats are the same)."""
    weights = scored.column("weight").to_numpy()
    logprobs = scored.column("logprob_sum").to_numpy()
    chosen = logprobs[groups.reference_row].tolist()
    sums, counts = [0.0] * len(groups.pairs), [0] * len(groups.pairs)
    for row in np.flatnonzero(weights < 0).tolist():
        pair = int(groups.of_row[row])
        sums[pair] += softplus(-beta * (chosen[pair] - float(logprobs[row])))
        counts[pair] += 1
    if 0 in counts:
        candidate_id, example_id = groups.pairs[counts.index(0)]
        raise ValueError(
            f"candidate {candidate_id!r}, example {example_id!r}: the preference objective needs "
            f"at least one rejected row (weight < 0); found none"
        )
    return [total / count for total, count in zip(sums, counts)]


def example_losses(
    scored: pa.Table, *, objective: Objective, reduction: Reduction = "mean", beta: float = 1.0
) -> dict[str, dict[str, float]]:
    """candidate_id -> example_id -> loss, in the order candidates and examples first appear.

    "ce" scores the single weight > 0 row of each (candidate, example) and ignores rejected
    rows; "preference" compares that row with every weight < 0 row of the same pair (sequence
    log-probabilities: the paper's s(y), so `reduction` does not apply to it);
    "ce_plus_preference" adds the two, which keeps the reference likely in absolute terms while
    the preference term ranks it above the distractors (which alone can be won by making
    every option unlikely). Rows are grouped with array operations: this runs on every
    scoring job's rows.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    missing = [name for name in SCORED_COLUMNS if name not in scored.column_names]
    if missing:
        raise ValueError(
            f"scored table: column(s) {', '.join(repr(m) for m in missing)} missing; "
            f"the table has {scored.column_names}"
        )
    if scored.num_rows == 0:
        return {}
    groups = _Groups.of(scored)
    if objective == "ce":
        losses = _cross_entropies(scored, groups, reduction).tolist()
    else:
        losses = _preference_losses(scored, groups, beta)
        if objective == "ce_plus_preference":
            ce = _cross_entropies(scored, groups, reduction).tolist()
            losses = [preference + entropy for preference, entropy in zip(losses, ce)]
    result: dict[str, dict[str, float]] = {}
    for (candidate_id, example_id), loss in zip(groups.pairs, losses):
        result.setdefault(candidate_id, {})[example_id] = loss
    return result


def mean_loss(losses: Mapping[str, float]) -> float:
    """A prompt's batch loss: the plain mean over its examples, so every example counts once."""
    if not losses:
        raise ValueError("mean_loss needs at least one example loss; got none")
    return sum(losses.values()) / len(losses)


def resolve_objective(objective: str, task_format: str) -> Objective:
    """The loss a config's `objective` means for a task of `task_format`: "auto" is the
    format's default objective (tasks/format_specs.py): the preference loss for preference
    tasks and cross-entropy for every other format.

    Multiple choice gets cross-entropy of the gold option, not the paper's preference loss over
    the distractors: in our study (README, "Does it work?"; pipelines/studies/
    bbh_mc_objectives.yaml) cross-entropy gave the lowest held-out CE on 4 of 4 tasks and the
    best generation accuracy, with option accuracy within the seeds' spread of the preference
    loss, and it scores a third of the rows per candidate, so an equal budget explores more.
    """
    spec = format_spec(task_format)
    if objective == "auto":
        return spec.default_objective
    if objective in NEEDS_REJECTED and not spec.has_rejected_answers:
        with_rejected = [s.name for s in FORMAT_SPECS.values() if s.has_rejected_answers]
        raise ValueError(
            f"the {objective} objective needs rejected answers: "
            f"use a {' or '.join(with_rejected)} task"
        )
    return objective
