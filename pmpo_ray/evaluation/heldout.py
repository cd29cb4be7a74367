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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pmpo_ray.evaluation.extractors import is_correct
from pmpo_ray.evaluation.intervals import prompt_intervals
from pmpo_ray.evaluation.label_prior import shares
from pmpo_ray.evaluation.prompt_scores import PromptEvaluation
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.format_specs import TaskFormat, format_spec

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("prompt_name", pa.string()),
        ("example_id", pa.string()),
        ("heldout_ce", pa.float64()),
        ("heldout_loss", pa.float64()),
        ("options", pa.list_(pa.string())),  # multiple choice: reference first
        ("option_logprobs", pa.list_(pa.float64())),
        ("chosen_option", pa.string()),  # the option scored highest (null on a tie)
        ("chosen_option_norm", pa.string()),  # the same per character
        ("output", pa.string()),  # the greedy answer (null where none was generated)
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


def prompt_rows(
    task: EvalTask,
    evaluations: Mapping[str, PromptEvaluation],
    seconds: float,
    cached: Collection[str] = (),
) -> list[dict]:
    """One evaluation.json entry per named prompt: its figures, their 95% intervals, each
    figure's paired change from the initial prompt, and (multiple choice) how often it chose
    each label. `evaluations` maps prompt text -> its results; a text in `cached` was read
    from the evaluation cache and took none of this call's `seconds`, which the others share
    by tokens."""
    has_options = format_spec(task.format).has_options
    figures = {text: e.figures(has_options) for text, e in evaluations.items()}
    per_example = {text: e.per_example(has_options) for text, e in evaluations.items()}
    costs = {
        text: 0 if text in cached else f["tokens_scored"] + f["tokens_generated"]
        for text, f in figures.items()
    }
    total = sum(costs.values()) or 1
    initial = next((p.text for p in task.prompts if p.name == "initial"), None)
    rows = []
    for prompt in task.prompts:
        ci95, vs_initial = prompt_intervals(
            per_example[prompt.text],
            None if prompt.name == "initial" or initial is None else per_example[initial],
        )
        rows.append(
            {
                "name": prompt.name,
                "text": prompt.text,
                **figures[prompt.text],
                "seconds": seconds * costs[prompt.text] / total,
                "from_cache": prompt.text in cached,
                "ci95": ci95,
                "vs_initial": vs_initial,
                "choices": label_shares(evaluations[prompt.text].chosen_labels())
                if has_options
                else None,
            }
        )
    return rows


def gold_shares(task: EvalTask) -> dict[str, float] | None:
    """Multiple choice: label -> share of the held-out examples whose gold answer it is."""
    if not format_spec(task.format).has_options:
        return None
    return label_shares([example.gold_answer for example in task.examples])


def label_shares(labels: Sequence[str | None]) -> dict[str, float]:
    """Labels compared as written, without the spacing a continuation carries."""
    return shares([None if label is None else label.strip() for label in labels])


def predictions_table(task: EvalTask, evaluations: Mapping[str, PromptEvaluation]) -> pa.Table:
    """One row per (named prompt, held-out example): what scoring measured (CE, the chosen
    option and every option's log-probability) and the greedy answer where one was made."""
    gold = {example.example_id: example.gold_answer for example in task.examples}
    rows = []
    for prompt in task.prompts:
        evaluation = evaluations[prompt.text]
        answers = {a.example_id: a for a in evaluation.answers or ()}
        for score in evaluation.scores:
            answer = answers.get(score.example_id)
            rows.append(
                {
                    "prompt_name": prompt.name,
                    "example_id": score.example_id,
                    "heldout_ce": score.ce,
                    "heldout_loss": score.loss,
                    "options": list(score.options) if score.options else None,
                    "option_logprobs": list(score.option_logprobs)
                    if score.option_logprobs
                    else None,
                    "chosen_option": score.chosen_option,
                    "chosen_option_norm": score.chosen_option_norm,
                    "output": answer.output if answer else None,
                    "extracted": answer.extracted if answer else None,
                    "gold": gold[score.example_id],
                    "correct": answer.correct if answer else None,
                }
            )
    return pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA)


def generation_counterfactual(
    task: EvalTask,
    evaluations: Mapping[str, PromptEvaluation],
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
        scores = evaluations[optimized["text"]].scores
        mean_tokens = sum(s.reference_tokens for s in scores) / max(1, len(scores))
        measured_on = "references"
    return {
        "candidates_scored": candidates_scored,
        "train_examples": train_examples,
        "mean_answer_tokens": mean_tokens,
        "answer_length_from": measured_on,
        "generated_tokens": round(candidates_scored * train_examples * mean_tokens),
        "loss_based_tokens_generated": loss_based_generated,
    }
