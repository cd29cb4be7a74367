"""One prompt's held-out results, example by example, and the figures they add up to.

A prompt's evaluation is kept per example (its cross-entropy, its loss, the option it chose,
its greedy answer), not only as means: paired confidence intervals resample examples
(evaluation/intervals.py), the label-prior check counts chosen options
(evaluation/label_prior.py), and the evaluation cache (evaluation/cache.py) stores exactly
this record, so a cached prompt yields the same figures as a fresh one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from pmpo_ray.evaluation.option_accuracy import chosen_row, rows_by_example
from pmpo_ray.pmpo.loss import example_losses, pairwise_accuracy

# The per-example figures an accuracy or a loss is the mean of, by their evaluation.json names.
PER_EXAMPLE = (
    "heldout_ce",
    "heldout_loss",
    "pairwise_accuracy",
    "option_accuracy",
    "option_accuracy_norm",
    "accuracy",
)


@dataclass(frozen=True)
class ExampleScore:
    """What scoring one held-out example under one prompt measured (one teacher-forced pass
    over its reference and, where it has them, its distractors)."""

    example_id: str
    ce: float  # nats per token of the reference answer
    loss: float  # under the task's objective
    pairwise: float | None  # share of rejected answers ranked below the reference
    options: tuple[str, ...] | None  # the options scored, reference first (multiple choice)
    option_logprobs: tuple[float, ...] | None  # their log-probabilities, in that order
    chosen_option: str | None  # the option scored highest; None on a tie or without options
    chosen_option_norm: str | None  # the same per character of the option
    reference_tokens: int  # tokens of the reference answer
    forward_passes: int
    tokens_scored: int


@dataclass(frozen=True)
class Answer:
    """One greedy held-out answer, graded."""

    example_id: str
    output: str
    extracted: str | None
    gold: str
    correct: bool
    n_tokens: int


@dataclass(frozen=True)
class PromptEvaluation:
    """One prompt on one task's held-out examples: scores per example, and greedy answers
    where the task's format is graded by them (None where nothing was generated)."""

    scores: tuple[ExampleScore, ...]
    answers: tuple[Answer, ...] | None

    def per_example(self, has_options: bool) -> dict[str, list[float] | None]:
        """Each figure of PER_EXAMPLE as one value per example (accuracies as 1.0 or 0.0),
        None for a figure not measured; the mean of a list is the figure evaluation.json
        reports."""
        scores = self.scores
        pairwise = [s.pairwise for s in scores if s.pairwise is not None]
        return {
            "heldout_ce": [s.ce for s in scores],
            "heldout_loss": [s.loss for s in scores],
            "pairwise_accuracy": pairwise or None,
            "option_accuracy": _option_hits(scores, norm=False) if has_options else None,
            "option_accuracy_norm": _option_hits(scores, norm=True) if has_options else None,
            "accuracy": [float(a.correct) for a in self.answers] if self.answers else None,
        }

    def figures(self, has_options: bool) -> dict[str, float | None]:
        """The means evaluation.json reports, and the work the evaluation cost."""
        means = {
            name: (sum(values) / len(values) if values else None)
            for name, values in self.per_example(has_options).items()
        }
        return {
            **means,
            "forward_passes": sum(s.forward_passes for s in self.scores),
            "tokens_scored": sum(s.tokens_scored for s in self.scores),
            "tokens_generated": sum(a.n_tokens for a in self.answers or ()),
        }

    def chosen_labels(self) -> list[str | None]:
        """The option each example's highest score picked (None on a tie)."""
        return [s.chosen_option for s in self.scores]


def _option_hits(scores: Sequence[ExampleScore], *, norm: bool) -> list[float] | None:
    """1.0 where the chosen option is the reference (listed first), over the examples that
    have options; None when none has."""
    hits = []
    for score in scores:
        if score.options is None:
            continue
        chosen = score.chosen_option_norm if norm else score.chosen_option
        hits.append(float(chosen is not None and chosen == score.options[0]))
    return hits or None


def example_scores(
    scored: pa.Table, *, objective: str, reduction: str, beta: float
) -> dict[str, tuple[ExampleScore, ...]]:
    """candidate id -> one ExampleScore per example, in the order the examples were scored."""
    ce = example_losses(scored, objective="ce", reduction="mean")
    loss = example_losses(scored, objective=objective, reduction=reduction, beta=beta)
    columns = ["candidate_id", "example_id", "weight", "logprob_sum", "n_input_tokens", "n_tokens"]
    rows: dict[str, dict[str, list[dict]]] = {}
    for row in scored.select([*columns, "continuation"]).to_pylist():
        rows.setdefault(row["candidate_id"], {}).setdefault(row["example_id"], []).append(row)
    return {
        candidate_id: tuple(
            _example_score(example_id, rows[candidate_id][example_id], value, loss[candidate_id])
            for example_id, value in per_example.items()
        )
        for candidate_id, per_example in ce.items()
    }


def _example_score(example_id: str, rows: list[dict], ce: float, losses: dict) -> ExampleScore:
    rejected = [row["logprob_sum"] for row in rows if row["weight"] < 0]
    reference = next(row for row in rows if row["weight"] > 0)
    with_options = bool(rows_by_example(rows))
    ordered = [reference, *(row for row in rows if row["weight"] < 0)]
    return ExampleScore(
        example_id=example_id,
        ce=ce,
        loss=losses[example_id],
        pairwise=pairwise_accuracy(reference["logprob_sum"], rejected) if rejected else None,
        options=tuple(row["continuation"] for row in ordered) if with_options else None,
        option_logprobs=tuple(row["logprob_sum"] for row in ordered) if with_options else None,
        chosen_option=_chosen(rows, per_char=False) if with_options else None,
        chosen_option_norm=_chosen(rows, per_char=True) if with_options else None,
        reference_tokens=reference["n_tokens"],
        forward_passes=len(rows),
        tokens_scored=sum(row["n_input_tokens"] for row in rows),
    )


def _chosen(rows: list[dict], *, per_char: bool) -> str | None:
    row = chosen_row(rows, per_char=per_char)
    return None if row is None else row["continuation"]
