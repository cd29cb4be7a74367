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

from pmpo_ray.config import EngineSettings
from pmpo_ray.evaluation.cache import EvaluationCache
from pmpo_ray.evaluation.cached_evaluation import evaluate_texts
from pmpo_ray.evaluation.heldout import (
    EvalPrompt,
    EvalTask,
    eval_prompts,
    generation_counterfactual,
    gold_shares,
    predictions_table,
    prompt_rows,
)
from pmpo_ray.evaluation.prompt_scores import PromptEvaluation
from pmpo_ray.evaluation.resume import BASIS, evaluation_basis, kept_evaluation
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.loss import resolve_objective
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
    run: RunFolder,
    *,
    engines,
    config: EvaluationConfig | None = None,
    scorer: EngineSettings | None = None,
    cache: EvaluationCache | None = None,
) -> dict[str, dict]:
    """task id -> its evaluation.json content; writes the files into each task folder.
    Everything is scored and answered by the scorer's model (`engines.generate(...,
    pool="scorer")`): evaluation grades the model the prompts were optimized for, never a
    separate rewriter. `scorer` is the engine config `engines` score with (default: the
    run's own), part of the evaluation cache's key; `cache` defaults to the environment's
    (evaluation/cache.py)."""
    config = config or run.evaluation
    scorer_key = (scorer or run.engine).model_dump(mode="json")
    cache = cache or EvaluationCache.from_environment()
    loaded = [folder_eval_task(folder, config) for folder in run.tasks]  # bad data fails first
    results = {}
    for folder, (task, n_train) in zip(run.tasks, loaded):
        basis = evaluation_basis(folder, task, config)
        kept = kept_evaluation(folder.path, basis)
        if kept is not None:
            print(f"task {task.task_id}: kept its evaluation (same settings and result)")
            results[task.task_id] = kept
            continue
        started = time.perf_counter()
        [evaluations], [cached] = evaluate_texts(
            [task],
            engines=engines,
            config=config,
            role=run.prompt_format.role,
            scorer=scorer_key,
            cache=cache,
        )
        seconds = time.perf_counter() - started
        evaluation = evaluation_record(folder, task, n_train, evaluations, cached, seconds)
        evaluation[BASIS] = basis
        write_evaluation(folder.path, evaluation, predictions_table(task, evaluations))
        results[task.task_id] = evaluation
    return results


def evaluation_record(
    folder: TaskFolder,
    task: EvalTask,
    n_train: int,
    evaluations: dict[str, PromptEvaluation],
    cached: set[str],
    seconds: float,
) -> dict:
    """One task's evaluation.json content (without its basis); `cached`: the prompt texts
    read from the evaluation cache."""
    rows = prompt_rows(task, evaluations, seconds, cached)
    return {
        "task_id": task.task_id,
        "format": task.format,
        "answer_match": task.answer_match,
        "n_train": n_train,
        "n_heldout": len(task.examples),
        "prompts": rows,
        "gold_shares": gold_shares(task),
        "training": {"initial_loss": folder.initial_loss, "best_loss": folder.best_loss},
        "generation_counterfactual": generation_counterfactual(
            task,
            evaluations,
            rows,
            folder.candidates_scored,
            n_train,
            folder.training_work.tokens_generated,
        ),
        "seconds": seconds,
    }


def with_overrides(config: EvaluationConfig, **overrides) -> EvaluationConfig:
    """The run's evaluation settings with command-line values (None = keep) applied."""
    kept = {key: value for key, value in overrides.items() if value is not None}
    return EvaluationConfig.model_validate({**config.model_dump(), **kept})
