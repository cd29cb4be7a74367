"""Turn scored rows into the losses PMPO minimizes.

The scoring engines only report the log-probability of each continuation; what counts as a
good prompt is decided here. Two objectives are supported: the paper's cross-entropy of the
reference answer, and a pairwise preference loss for tasks that come with rejected answers
(multiple-choice distractors, preference pairs). Keeping this pure arithmetic over plain values
lets the optimizer loop be tested without a model.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping, Sequence

import pyarrow as pa

Reduction = Literal["mean", "sum"]
Objective = Literal["ce", "preference", "ce_plus_preference"]
OBJECTIVES = ("ce", "preference", "ce_plus_preference")
# Objectives that compare the reference with rejected answers, so those must be scored too.
NEEDS_REJECTED = ("preference", "ce_plus_preference")

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


def _group_rows(scored: pa.Table) -> dict[str, dict[str, list[dict]]]:
    """Rows by candidate, then example, in first-seen order (dicts keep insertion order)."""
    missing = [name for name in SCORED_COLUMNS if name not in scored.column_names]
    if missing:
        raise ValueError(
            f"scored table: column(s) {', '.join(repr(m) for m in missing)} missing; "
            f"the table has {scored.column_names}"
        )
    groups: dict[str, dict[str, list[dict]]] = {}
    for row in scored.select(list(SCORED_COLUMNS)).to_pylist():
        groups.setdefault(row["candidate_id"], {}).setdefault(row["example_id"], []).append(row)
    return groups


def _reference_row(rows: Sequence[dict], candidate_id: str, example_id: str) -> dict:
    references = [row for row in rows if row["weight"] > 0]
    if len(references) != 1:
        raise ValueError(
            f"candidate {candidate_id!r}, example {example_id!r}: expected exactly one reference "
            f"row (weight > 0); found {len(references)}"
        )
    return references[0]


def _example_loss(
    rows: Sequence[dict],
    candidate_id: str,
    example_id: str,
    *,
    objective: Objective,
    reduction: Reduction,
    beta: float,
) -> float:
    reference = _reference_row(rows, candidate_id, example_id)
    if objective == "ce":
        return example_ce(reference["logprob_sum"], reference["n_tokens"], reduction)
    rejected = [row["logprob_sum"] for row in rows if row["weight"] < 0]
    if not rejected:
        raise ValueError(
            f"candidate {candidate_id!r}, example {example_id!r}: the preference objective needs "
            f"at least one rejected row (weight < 0); found none"
        )
    # Sequence log-probabilities (sums): the paper's s(y), so `reduction` does not apply here.
    preference = preference_loss(reference["logprob_sum"], rejected, beta)
    # The sum keeps the reference likely in absolute terms while the preference term ranks it
    # above the distractors (which alone can be won by making every option unlikely).
    if objective == "ce_plus_preference":
        return preference + example_ce(reference["logprob_sum"], reference["n_tokens"], reduction)
    return preference


def example_losses(
    scored: pa.Table, *, objective: Objective, reduction: Reduction = "mean", beta: float = 1.0
) -> dict[str, dict[str, float]]:
    """candidate_id -> example_id -> loss, in the order candidates and examples first appear.

    "ce" scores the single weight > 0 row of each (candidate, example) and ignores rejected
    rows; "preference" compares that row with every weight < 0 row of the same pair;
    "ce_plus_preference" adds the two.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    return {
        candidate_id: {
            example_id: _example_loss(
                rows, candidate_id, example_id, objective=objective, reduction=reduction, beta=beta
            )
            for example_id, rows in examples.items()
        }
        for candidate_id, examples in _group_rows(scored).items()
    }


def mean_loss(losses: Mapping[str, float]) -> float:
    """A prompt's batch loss: the plain mean over its examples, so every example counts once."""
    if not losses:
        raise ValueError("mean_loss needs at least one example loss; got none")
    return sum(losses.values()) / len(losses)


def resolve_objective(objective: str, task_format: str) -> Objective:
    """The loss a config's `objective` means for a task of `task_format`: "auto" is the
    preference loss for preference tasks and cross-entropy for every other format.

    Multiple choice gets cross-entropy of the gold option, not the paper's preference loss over
    the distractors: in our study (README, "Does it work?"; pipelines/studies/
    bbh_mc_objectives.yaml) cross-entropy gave the lowest held-out CE on 4 of 4 tasks and the
    best generation accuracy, with option accuracy within the seeds' spread of the preference
    loss, and it scores a third of the rows per candidate, so an equal budget explores more.
    """
    if objective != "auto":
        if objective in NEEDS_REJECTED and task_format == "supervised":
            raise ValueError(
                f"the {objective} objective needs rejected answers: "
                "use a multiple_choice or preference task"
            )
        return objective
    return "preference" if task_format == "preference" else "ce"
