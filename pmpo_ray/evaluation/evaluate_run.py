"""Evaluate every task of a run folder on its held-out split, and write the results beside it.

Task by task: a task's held-out scoring requests go through one scoring call and its greedy
answers through one generation call, so the same engines serve: a bare engine (`pmpo
evaluate`) or the Ray Data fan-out over replica pools (the suite job). The run is a
`RunFolder` record, read from its files (`pmpo evaluate`) or built from the results in memory
(the suite job, right after writing them). Each task folder gets evaluation.json and
predictions.parquet as soon as that task is done, so a failure keeps the finished tasks, and
the next call keeps every task already evaluated on the same basis (evaluation/resume.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import pyarrow as pa

from pmpo_ray.evaluation.heldout import (
    EvalPrompt,
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
from pmpo_ray.evaluation.resume import BASIS, evaluation_basis, kept_evaluation
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.loss import resolve_objective
from pmpo_ray.pmpo.rounds import run_stage
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA
from pmpo_ray.run_folder.layout import CONFIG
from pmpo_ray.run_folder.records import RunFolder, TaskFolder
from pmpo_ray.run_folder.write import write_evaluation
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.task import Task, check_data_files, load_task


def eval_task(
    task: Task,
    prompts: Sequence[EvalPrompt],
    config: EvaluationConfig,
    optimizer: OptimizerConfig | None = None,
) -> EvalTask:
    """`task`'s held-out examples (capped by max_examples) with `prompts`; its loss is the
    optimizer's objective, or without one cross-entropy per token (a study compares every
    variant on that one measure)."""
    examples = task.test[: config.max_examples] if config.max_examples else task.test
    if not examples:
        raise DataError(f"task {task.task_id!r}: held-out split is empty; nothing to evaluate")
    objective, reduction, beta = "ce", "mean", 1.0
    if optimizer is not None:
        objective = resolve_objective(optimizer.objective, task.format)
        reduction, beta = optimizer.reduction, optimizer.beta
    return EvalTask(
        task_id=task.task_id,
        format=task.format,
        answer_match=task.answer_match,
        examples=tuple(examples),
        prompts=tuple(prompts),
        objective=objective,
        reduction=reduction,
        beta=beta,
    )


def folder_eval_task(folder: TaskFolder, config: EvaluationConfig) -> tuple[EvalTask, int]:
    """The task's held-out examples and its run's prompts, measured by its run's objective;
    also n_train."""
    task = load_task(folder.config.task)
    prompts = eval_prompts(folder.initial_prompt, folder.best_prompt, config)
    return eval_task(task, prompts, config, folder.config.optimizer), len(task.train)


def check_task_data(run: RunFolder) -> None:
    """Every task's data files are where its config.yaml says (nothing is read): a file moved
    since the run fails in one line naming the task folder's config.yaml and the path, before
    an engine loads."""
    for folder in run.tasks:
        try:
            check_data_files(folder.config.task)
        except DataError as error:
            raise DataError(
                f"{folder.path / CONFIG}: task {folder.task_id!r}: {error}; evaluation reads "
                "the task's data from there: put the file back, or edit its path in that file"
            ) from None


def evaluate_run(
    run: RunFolder, *, engines, config: EvaluationConfig | None = None
) -> dict[str, dict]:
    """task id -> its evaluation.json content; writes the files into each task folder.
    Everything is scored and answered by the scorer's model (`engines.generate(...,
    pool="scorer")`): evaluation grades the model the prompts were optimized for, never a
    separate rewriter."""
    config = config or run.evaluation
    loaded = [folder_eval_task(folder, config) for folder in run.tasks]  # bad data fails first
    results = {}
    for folder, (task, n_train) in zip(run.tasks, loaded):
        basis = evaluation_basis(folder, task, config)
        kept = kept_evaluation(folder.path, basis)
        if kept is not None:
            print(f"task {task.task_id}: kept its evaluation (same settings and result)")
            results[task.task_id] = kept
            continue
        evaluation, predictions = evaluate_task(
            folder,
            task,
            n_train,
            role=run.prompt_format.role,
            config=config,
            engines=engines,
        )
        evaluation[BASIS] = basis
        write_evaluation(folder.path, evaluation, predictions)
        results[task.task_id] = evaluation
    return results


def evaluate_task(
    folder: TaskFolder,
    task: EvalTask,
    n_train: int,
    *,
    role: str,
    config: EvaluationConfig,
    engines,
) -> tuple[dict, pa.Table]:
    """One task's evaluation.json content and predictions table."""
    started = time.perf_counter()
    empty_scored = pa.table({"request_id": pa.array([], pa.int64())})
    [scored] = run_stage([holdout_score_requests(task, role)], engines.score, empty_scored)
    answers, keys = answer_requests(task, role, config)
    no_samples = GENERATE_RESULT_SCHEMA.empty_table()
    [generated] = run_stage([answers], scorer_answers(engines), no_samples)
    seconds = time.perf_counter() - started
    graded = grade_answers(task, keys, generated)
    rows = prompt_rows(task, score_metrics(task, scored), graded, seconds)
    evaluation = {
        "task_id": task.task_id,
        "format": task.format,
        "answer_match": task.answer_match,
        "n_train": n_train,
        "n_heldout": len(task.examples),
        "prompts": rows,
        "training": {"initial_loss": folder.initial_loss, "best_loss": folder.best_loss},
        "generation_counterfactual": generation_counterfactual(
            task,
            scored,
            rows,
            folder.candidates_scored,
            n_train,
            folder.training_work.tokens_generated,
        ),
        "seconds": seconds,
    }
    return evaluation, predictions_table(task, graded)


def scorer_answers(engines):
    """Generation by the scorer's model: held-out answers grade the optimized model."""
    return partial(engines.generate, pool="scorer")


def with_overrides(config: EvaluationConfig, **overrides) -> EvaluationConfig:
    """The run's evaluation settings with command-line values (None = keep) applied."""
    kept = {key: value for key, value in overrides.items() if value is not None}
    return EvaluationConfig.model_validate({**config.model_dump(), **kept})
