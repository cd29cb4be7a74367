"""Evaluate every task of a run folder on its held-out split, and write the results beside it.

All tasks' held-out scoring requests go through one scoring call and all greedy answers
through one generation call, exactly like an optimization round, so the same engines serve:
a bare engine (`pmpo evaluate`) or the Ray Data fan-out over replica pools (the suite job).
The run is a `RunFolder` record, read from its files (`pmpo evaluate`) or built from the
results in memory (the suite job, right after writing them). Each task folder gets
evaluation.json and predictions.parquet, written only once every task has been evaluated.
"""

from __future__ import annotations

import time

import pyarrow as pa

from pmpo_ray.evaluation.config import EvaluationConfig
from pmpo_ray.evaluation.heldout import (
    EvalTask,
    answer_requests,
    eval_prompts,
    generation_counterfactual,
    grade_answers,
    holdout_score_requests,
    predictions_table,
    prompt_rows,
    score_metrics,
)
from pmpo_ray.pmpo.loss import resolve_objective
from pmpo_ray.pmpo.rounds import run_stage
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA
from pmpo_ray.run_folder.records import RunFolder, TaskFolder
from pmpo_ray.run_folder.write import write_evaluation
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.task import load_task


def eval_task(folder: TaskFolder, config: EvaluationConfig) -> tuple[EvalTask, int]:
    """The task's held-out examples (capped by max_examples) and prompts; also n_train."""
    task = load_task(folder.config.task)
    examples = task.test[: config.max_examples] if config.max_examples else task.test
    if not examples:
        raise DataError(f"task {task.task_id!r}: held-out split is empty; nothing to evaluate")
    prompts = eval_prompts(folder.initial_prompt, folder.best_prompt, config)
    optimizer = folder.config.optimizer
    return (
        EvalTask(
            task_id=task.task_id,
            format=task.format,
            answer_match=task.answer_match,
            examples=tuple(examples),
            prompts=prompts,
            objective=resolve_objective(optimizer.objective, task.format),
            reduction=optimizer.reduction,
            beta=optimizer.beta,
        ),
        len(task.train),
    )


def evaluate_run(
    run: RunFolder, *, scorer, generator, config: EvaluationConfig | None = None
) -> dict[str, dict]:
    """task id -> its evaluation.json content; writes the files into each task folder."""
    config = config or run.evaluation
    loaded = [eval_task(folder, config) for folder in run.tasks]  # bad data fails first
    tasks = [task for task, _ in loaded]
    role = run.prompt_format.role
    started = time.perf_counter()
    empty_scored = pa.table({"request_id": pa.array([], pa.int64())})
    requests = [holdout_score_requests(task, role) for task in tasks]
    scored = run_stage(requests, scorer.score, empty_scored)
    answers = [answer_requests(task, role, config) for task in tasks]
    no_samples = GENERATE_RESULT_SCHEMA.empty_table()
    generated = run_stage([table for table, _ in answers], generator.generate, no_samples)
    seconds = time.perf_counter() - started

    results, predictions = {}, {}
    total_rows = sum(t.num_rows for t in requests) + sum(t.num_rows for t, _ in answers) or 1
    for index, (task, n_train) in enumerate(loaded):
        task_seconds = (
            seconds * (requests[index].num_rows + answers[index][0].num_rows) / total_rows
        )
        graded = grade_answers(task, answers[index][1], generated[index])
        rows = prompt_rows(task, score_metrics(task, scored[index]), graded, task_seconds)
        folder = run.tasks[index]
        results[task.task_id] = {
            "task_id": task.task_id,
            "format": task.format,
            "answer_match": task.answer_match,
            "n_train": n_train,
            "n_heldout": len(task.examples),
            "prompts": rows,
            "training": {
                "initial_loss": folder.initial_loss,
                "best_loss": folder.best_loss,
            },
            "generation_counterfactual": generation_counterfactual(
                task,
                scored[index],
                rows,
                folder.candidates_scored,
                n_train,
                folder.training_cost.tokens_generated,
            ),
            "seconds": task_seconds,
        }
        predictions[task.task_id] = predictions_table(task, graded)
    for folder, (task, _) in zip(run.tasks, loaded):
        write_evaluation(folder.path, results[task.task_id], predictions[task.task_id])
    return results


def with_overrides(config: EvaluationConfig, **overrides) -> EvaluationConfig:
    """The run's evaluation settings with command-line values (None = keep) applied."""
    kept = {key: value for key, value in overrides.items() if value is not None}
    return EvaluationConfig.model_validate({**config.model_dump(), **kept})
