"""Evaluate tasks' prompts on their held-out splits, scoring only what the cache lacks.

Both callers (a run folder's evaluation, evaluate_run.py; a study's distinct final prompts,
studies/heldout.py) hand over EvalTasks; every prompt the cache holds is read back, and the
others go, all tasks together, through one scoring call and one generation call by the
scorer's model, then into the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import partial

import pyarrow as pa

from pmpo_ray.evaluation.cache import EvaluationCache, cache_key
from pmpo_ray.evaluation.heldout import (
    EvalPrompt,
    EvalTask,
    answer_requests,
    distinct_texts,
    grade_answers,
    holdout_score_requests,
    wants_accuracy,
)
from pmpo_ray.evaluation.prompt_scores import Answer, PromptEvaluation, example_scores
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.pmpo.rounds import run_stage
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA


def scorer_answers(engines):
    """Generation by the scorer's model: held-out answers grade the optimized model."""
    return partial(engines.generate, pool="scorer")


def evaluate_texts(
    tasks: Sequence[EvalTask],
    *,
    engines,
    config: EvaluationConfig,
    role: str,
    scorer: dict,
    cache: EvaluationCache,
) -> tuple[list[dict[str, PromptEvaluation]], list[set[str]]]:
    """Per task, prompt text -> its PromptEvaluation; and per task the texts read from the
    cache. `scorer` is the scorer's engine config as JSON values (part of the cache key)."""
    keys = [prompt_keys(task, config, role, scorer) for task in tasks]
    found = [{text: cache.get(key) for text, key in task_keys.items()} for task_keys in keys]
    missing = [
        replace(task, prompts=_named([text for text, hit in hits.items() if hit is None]))
        for task, hits in zip(tasks, found)
    ]
    fresh = _evaluate(missing, engines=engines, config=config, role=role)
    results = []
    for task_keys, hits, computed in zip(keys, found, fresh):
        for text, evaluation in computed.items():
            cache.put(task_keys[text], evaluation)
        results.append({text: hits[text] or computed[text] for text in task_keys})
    return results, [{text for text, hit in hits.items() if hit is not None} for hits in found]


def prompt_keys(task: EvalTask, config: EvaluationConfig, role: str, scorer: dict) -> dict:
    """prompt text -> its cache key, for each distinct text of the task."""
    examples = json.dumps([asdict(e) for e in task.examples], sort_keys=True, ensure_ascii=False)
    settings = {
        "format": task.format,
        "answer_match": task.answer_match,
        "objective": [task.objective, task.reduction, task.beta],
        "answers": wants_accuracy(task, config),
        "max_answer_tokens": config.max_answer_tokens,
    }
    fingerprint = hashlib.sha256(examples.encode("utf-8")).hexdigest()
    return {
        text: cache_key(
            examples_fingerprint=fingerprint,
            prompt=text,
            role=role,
            settings=settings,
            scorer=scorer,
        )
        for text in distinct_texts(task.prompts).values()
    }


def _named(texts: Sequence[str]) -> tuple[EvalPrompt, ...]:
    return tuple(EvalPrompt(f"p{i}", text) for i, text in enumerate(texts))


def _evaluate(
    tasks: Sequence[EvalTask], *, engines, config: EvaluationConfig, role: str
) -> list[dict[str, PromptEvaluation]]:
    """Per task, prompt text -> its PromptEvaluation, all tasks in one scoring call and one
    generation call (none, and no engine needed, when nothing is missing)."""
    if not any(task.prompts for task in tasks):
        return [{} for _ in tasks]
    empty_scored = pa.table({"request_id": pa.array([], pa.int64())})
    scored = run_stage(
        [holdout_score_requests(t, role) for t in tasks], engines.score, empty_scored
    )
    asked = [answer_requests(t, role, config) for t in tasks]
    generated = run_stage(
        [table for table, _ in asked], scorer_answers(engines), GENERATE_RESULT_SCHEMA.empty_table()
    )
    results = []
    for task, task_scored, (_, keys), task_generated in zip(tasks, scored, asked, generated):
        if not task.prompts:
            results.append({})
            continue
        scores = example_scores(
            task_scored, objective=task.objective, reduction=task.reduction, beta=task.beta
        )
        graded = grade_answers(task, keys, task_generated)
        texts = distinct_texts(task.prompts)
        results.append(
            {
                text: PromptEvaluation(
                    scores=scores[candidate_id],
                    answers=tuple(Answer(**a) for a in graded[candidate_id])
                    if candidate_id in graded
                    else None,
                )
                for candidate_id, text in texts.items()
            }
        )
    return results
