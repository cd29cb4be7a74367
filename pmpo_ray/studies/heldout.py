"""Held-out evaluation of a study: every distinct prompt of a task (its initial prompt and each
run's best) scored and answered once, all tasks in one scoring and one generation call.

Many runs end on the same prompt (the initial one, when nothing beat it), so evaluating per
distinct text, not per run, is what keeps a study's evaluation affordable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pyarrow as pa

from pmpo_ray.evaluation.evaluate_run import eval_task, scorer_answers
from pmpo_ray.evaluation.heldout import (
    EvalPrompt,
    answer_requests,
    candidate_of,
    grade_answers,
    holdout_score_requests,
    score_metrics,
)
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.pmpo.rounds import run_stage
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA
from pmpo_ray.tasks.task import Task

METRICS = ("heldout_ce", "option_accuracy", "option_accuracy_norm", "accuracy")


def distinct_prompts(prompts: Sequence[str]) -> tuple[EvalPrompt, ...]:
    """Each distinct prompt text once, named p0, p1, ... in first-seen order."""
    distinct = dict.fromkeys(prompts)
    return tuple(EvalPrompt(f"p{i}", text) for i, text in enumerate(distinct))


def evaluate_prompts(
    tasks: Mapping[str, tuple[Task, Sequence[str]]],
    *,
    client,
    config: EvaluationConfig,
    role: str,
) -> tuple[dict[str, dict[str, dict]], float]:
    """task id -> prompt text -> {heldout_ce, option_accuracy, option_accuracy_norm, accuracy};
    and the seconds it took."""
    started = time.perf_counter()
    # No optimizer: every variant is compared on the same measure, cross-entropy.
    evals = [eval_task(task, distinct_prompts(p), config) for task, p in tasks.values()]
    scored = run_stage(
        [holdout_score_requests(t, role) for t in evals],
        client.score,
        pa.table({"request_id": pa.array([], pa.int64())}),
    )
    asked = [answer_requests(t, role, config) for t in evals]
    generated = run_stage(
        [table for table, _ in asked],
        scorer_answers(client),
        GENERATE_RESULT_SCHEMA.empty_table(),
    )
    results = {}
    for task, task_scored, (_, keys), task_generated in zip(evals, scored, asked, generated):
        metrics = score_metrics(task, task_scored)
        graded = grade_answers(task, keys, task_generated)
        ids = candidate_of(task.prompts)
        results[task.task_id] = {
            prompt.text: prompt_metrics(metrics[ids[prompt.name]], graded.get(ids[prompt.name]))
            for prompt in task.prompts
        }
    return results, time.perf_counter() - started


def prompt_metrics(scores: dict, answers: list[dict] | None) -> dict:
    accuracy = sum(a["correct"] for a in answers) / len(answers) if answers else None
    return {**{key: scores.get(key) for key in METRICS[:3]}, "accuracy": accuracy}
