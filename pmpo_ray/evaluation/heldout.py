"""Held-out evaluation of a task's prompts, as plain functions over request tables.

Every prompt (initial, optimized, baselines) is scored on the held-out split in the same
batched teacher-forced pass the optimizer uses (cross-entropy and the task's own objective, one
of the three in pmpo/loss.py; pairwise accuracy where rejected answers exist; for formats with
options, option accuracy: the option the model scores highest, from that same pass), and
answers greedily for accuracy where the format generates answers (tasks/format_specs.py).
Building the requests and reading the results back are kept apart from running them, so one
suite's tasks share one scoring call and one generation call, and this file is testable
without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from pmpo_ray.evaluation.extractors import is_correct
from pmpo_ray.evaluation.option_accuracy import option_accuracy
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.pmpo.loss import example_losses, mean_loss, pairwise_accuracy
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.format_specs import TaskFormat, format_spec

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("prompt_name", pa.string()),
        ("example_id", pa.string()),
        ("output", pa.string()),
        ("extracted", pa.string()),
        ("gold", pa.string()),
        ("correct", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class EvalPrompt:
    name: str  # initial | optimized | a baseline's name
    text: str


@dataclass(frozen=True)
class EvalTask:
    """One task's evaluation inputs: what to score, how to read answers and losses."""

    task_id: str
    format: TaskFormat
    answer_match: str  # exact | option | number | none
    examples: tuple[Example, ...]
    prompts: tuple[EvalPrompt, ...]
    objective: str  # ce | preference | ce_plus_preference
    reduction: str
    beta: float


def eval_prompts(initial: str, optimized: str, config: EvaluationConfig) -> tuple[EvalPrompt, ...]:
    named = {"initial": initial, "optimized": optimized, **config.baselines}
    return tuple(EvalPrompt(name, text) for name, text in named.items())


def distinct_texts(prompts: Sequence[EvalPrompt]) -> dict[str, str]:
    """candidate id -> text, one per distinct text: a baseline equal to the initial prompt is
    scored once and reported under both names."""
    ids: dict[str, str] = {}
    for prompt in prompts:
        ids.setdefault(prompt.text, f"p{len(ids)}")
    return {candidate_id: text for text, candidate_id in ids.items()}


def candidate_of(prompts: Sequence[EvalPrompt]) -> dict[str, str]:
    by_text = {text: cid for cid, text in distinct_texts(prompts).items()}
    return {prompt.name: by_text[prompt.text] for prompt in prompts}


def holdout_score_requests(task: EvalTask, role: str) -> pa.Table:
    return score_requests(
        list(distinct_texts(task.prompts).items()),
        task.examples,
        task_id=task.task_id,
        kind="holdout",
        role=role,
        with_rejected=any(e.rejected for e in task.examples),
    )


def wants_accuracy(task: EvalTask, config: EvaluationConfig) -> bool:
    return config.accuracy and task.answer_match != "none"


def answer_requests(
    task: EvalTask, role: str, config: EvaluationConfig
) -> tuple[pa.Table, list[tuple[str, Example]]]:
    """Greedy answer requests, and which (candidate id, example) each request id stands for."""
    if not wants_accuracy(task, config):
        return generate_requests([], task_id=task.task_id), []
    texts = distinct_texts(task.prompts)
    keys = [(candidate_id, example) for candidate_id in texts for example in task.examples]
    messages = [(texts[cid], e.input) for cid, e in keys]
    table = generate_requests(
        messages,
        task_id=task.task_id,
        role=role,
        max_tokens=config.max_answer_tokens,
        temperature=0.0,
    )
    return table, keys


def options_of(example: Example) -> list[str]:
    """The answers an option match chooses among: the gold one (not the scored target, which
    for AQuA in supervised form is a whole rationale) and the distractors."""
    return [example.gold_answer, *example.rejected]


def grade_answers(
    task: EvalTask, keys: Sequence[tuple[str, Example]], generated: pa.Table
) -> dict[str, list[dict]]:
    """candidate id -> one graded answer per example, from greedy generation results."""
    by_request = {row["request_id"]: row for row in generated.to_pylist()}
    if len(by_request) != len(keys):
        raise ValueError(
            f"task {task.task_id!r}: {len(keys)} answers requested, {len(by_request)} returned"
        )
    graded: dict[str, list[dict]] = {}
    for request_id, (candidate_id, example) in enumerate(keys):
        output = by_request[request_id]["text"]
        extracted, correct = is_correct(
            output,
            example.gold_answer,
            task.answer_match,
            options_of(example),
            complete=by_request[request_id]["finish_reason"] == "stop",
        )
        graded.setdefault(candidate_id, []).append(
            {
                "example_id": example.example_id,
                "output": output,
                "extracted": extracted,
                "gold": example.gold_answer,
                "correct": correct,
                "n_tokens": by_request[request_id]["n_tokens"],
            }
        )
    return graded


def score_metrics(task: EvalTask, scored: pa.Table) -> dict[str, dict]:
    """candidate id -> held-out CE (nats/token), the task's loss, pairwise and option
    accuracy, cost."""
    ce = example_losses(scored, objective="ce", reduction="mean")
    loss = example_losses(
        scored, objective=task.objective, reduction=task.reduction, beta=task.beta
    )
    columns = ["candidate_id", "example_id", "weight", "logprob_sum", "n_input_tokens"]
    rows = scored.select([*columns, "continuation"]).to_pylist()
    metrics = {}
    for candidate_id in ce:
        mine = [row for row in rows if row["candidate_id"] == candidate_id]
        metrics[candidate_id] = {
            "heldout_ce": mean_loss(ce[candidate_id]),
            "heldout_loss": mean_loss(loss[candidate_id]),
            "pairwise_accuracy": _pairwise(mine),
            **option_metrics(task, mine),
            "forward_passes": len(mine),
            "tokens_scored": sum(row["n_input_tokens"] for row in mine),
        }
    return metrics


def option_metrics(task: EvalTask, rows: Sequence[dict]) -> dict[str, float | None]:
    """Option accuracy (lm-eval's acc) and its per-character variant (acc_norm), from the rows
    already scored; null for formats without options (a preference task's rejected answers
    are not options to choose among: pairwise accuracy is its measure)."""
    if not format_spec(task.format).has_options:
        return {"option_accuracy": None, "option_accuracy_norm": None}
    return {
        "option_accuracy": option_accuracy(rows),
        "option_accuracy_norm": option_accuracy(rows, per_char=True),
    }


def _pairwise(rows: Sequence[dict]) -> float | None:
    """Mean over examples of the share of rejected answers ranked below the reference."""
    by_example: dict[str, list[dict]] = {}
    for row in rows:
        by_example.setdefault(row["example_id"], []).append(row)
    shares = []
    for example_rows in by_example.values():
        rejected = [row["logprob_sum"] for row in example_rows if row["weight"] < 0]
        if rejected:
            chosen = next(row["logprob_sum"] for row in example_rows if row["weight"] > 0)
            shares.append(pairwise_accuracy(chosen, rejected))
    return sum(shares) / len(shares) if shares else None


def prompt_rows(
    task: EvalTask, metrics: dict[str, dict], graded: dict[str, list[dict]], seconds: float
) -> list[dict]:
    """One result row per named prompt; the task's wall time is shared out by tokens."""
    costs = {
        cid: m["tokens_scored"] + sum(g["n_tokens"] for g in graded.get(cid, []))
        for cid, m in metrics.items()
    }
    total = sum(costs.values()) or 1
    candidates = candidate_of(task.prompts)
    rows = []
    for prompt in task.prompts:
        cid = candidates[prompt.name]
        answers = graded.get(cid, [])
        rows.append(
            {
                "name": prompt.name,
                "text": prompt.text,
                **metrics[cid],
                "accuracy": sum(a["correct"] for a in answers) / len(answers) if answers else None,
                "tokens_generated": sum(a["n_tokens"] for a in answers),
                "seconds": seconds * costs[cid] / total,
            }
        )
    return rows


def predictions_table(task: EvalTask, graded: dict[str, list[dict]]) -> pa.Table:
    rows = [
        {"prompt_name": name, **{k: v for k, v in answer.items() if k != "n_tokens"}}
        for name, cid in candidate_of(task.prompts).items()
        for answer in graded.get(cid, [])
    ]
    return pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA)


def generation_counterfactual(
    task: EvalTask,
    scored: pa.Table,
    rows: Sequence[dict],
    candidates_scored: int,
    train_examples: int,
    loss_based_generated: int,
) -> dict:
    """What choosing among the same candidates by generated answers would have cost: one answer
    per candidate per training example, as long as the optimized prompt's greedy held-out
    answers (or, for preference tasks, as long as the reference answers)."""
    optimized = next(row for row in rows if row["name"] == "optimized")
    if optimized["accuracy"] is not None:
        mean_tokens, measured_on = optimized["tokens_generated"] / len(task.examples), "answers"
    else:
        references = [r for r in scored.to_pylist() if r["weight"] > 0]
        mean_tokens = sum(r["n_tokens"] for r in references) / max(1, len(references))
        measured_on = "references"
    return {
        "candidates_scored": candidates_scored,
        "train_examples": train_examples,
        "mean_answer_tokens": mean_tokens,
        "answer_length_from": measured_on,
        "generated_tokens": round(candidates_scored * train_examples * mean_tokens),
        "loss_based_tokens_generated": loss_based_generated,
    }
