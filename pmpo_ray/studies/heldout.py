"""Held-out evaluation of a study: every distinct prompt of a task (its initial prompt and each
run's best) scored and answered once, all tasks in one scoring and one generation call.

Many runs end on the same prompt (the initial one, when nothing beat it), so evaluating per
distinct text, not per run, is what keeps a study's evaluation affordable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from pmpo_ray.evaluation.cache import EvaluationCache
from pmpo_ray.evaluation.cached_evaluation import evaluate_texts, prompt_keys
from pmpo_ray.evaluation.evaluate_run import eval_task
from pmpo_ray.evaluation.heldout import EvalPrompt
from pmpo_ray.evaluation.prompt_scores import PromptEvaluation
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.tasks.format_specs import format_spec
from pmpo_ray.tasks.task import Task

METRICS = ("heldout_ce", "option_accuracy", "option_accuracy_norm", "accuracy")
COMPARED = ("heldout_ce", "option_accuracy", "accuracy")  # the study's tables compare these


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
    scorer: dict,
    cache: EvaluationCache,
) -> tuple[dict[str, dict[str, dict]], float]:
    """task id -> prompt text -> {heldout_ce, option_accuracy, option_accuracy_norm, accuracy,
    per_example}; and the seconds it took. `per_example` holds, per figure, one value per
    held-out example (in the task's order; None where not measured): the study's paired
    intervals resample them. Prompts the evaluation cache holds are not scored again."""
    started = time.perf_counter()
    # No optimizer: every variant is compared on the same measure, cross-entropy.
    evals = [eval_task(task, distinct_prompts(p), config) for task, p in tasks.values()]
    evaluations, _ = evaluate_texts(
        evals, engines=client, config=config, role=role, scorer=scorer, cache=cache
    )
    results = {
        task.task_id: {
            text: prompt_metrics(evaluation, format_spec(task.format).has_options)
            for text, evaluation in by_text.items()
        }
        for task, by_text in zip(evals, evaluations)
    }
    return results, time.perf_counter() - started


def cache_holds(
    tasks: Mapping[str, tuple[Task, Sequence[str]]],
    *,
    config: EvaluationConfig,
    role: str,
    scorer: dict,
    cache: EvaluationCache,
) -> bool:
    """Whether the evaluation cache holds every distinct prompt of every task (then the
    evaluation needs no engine)."""
    evals = [eval_task(task, distinct_prompts(p), config) for task, p in tasks.values()]
    return all(
        cache.get(key) is not None
        for task in evals
        for key in prompt_keys(task, config, role, scorer).values()
    )


def prompt_metrics(evaluation: PromptEvaluation, has_options: bool) -> dict:
    figures = evaluation.figures(has_options)
    per_example = evaluation.per_example(has_options)
    return {
        **{key: figures[key] for key in METRICS},
        "per_example": {key: per_example[key] for key in COMPARED},
    }
