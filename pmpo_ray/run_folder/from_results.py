"""The record of a run folder built from a finished optimization in memory, not its files.

The suite driver evaluates right after writing; building the record from the results it holds
(through the same row conversions the writer uses) spares re-reading what it just wrote, and
gives exactly what `read_run_folder` would return, less the evaluations not yet run (and the
round log, unless given).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pmpo_ray.pmpo.config import OptimizeJobConfig
from pmpo_ray.pmpo.records import OptimizationResult, rejection_counts
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.read import history_points
from pmpo_ray.run_folder.records import Cost, RunFolder, TaskFolder
from pmpo_ray.run_folder.write import history_table


def run_folder_from_results(
    out: Path,
    results: Sequence[OptimizationResult],
    configs: Sequence[OptimizeJobConfig],
    *,
    kind: str = "suite",
    rounds: Sequence[dict] = (),
) -> RunFolder:
    """A suite's record (tasks at tasks/<id>/ under `out`), or with kind="task" a single
    task's (the task folder is `out` itself); configs[i] is results[i]'s resolved config."""
    out = Path(out)
    if len(results) != len(configs):
        raise ValueError(f"{out}: {len(results)} results but {len(configs)} task configs")
    if kind == "task" and len(results) != 1:
        raise ValueError(f"{out}: a single-task run holds one result, got {len(results)}")
    tasks = tuple(
        task_folder_from_result(
            out if kind == "task" else layout.task_dir(out, result.task_id), result, config
        )
        for result, config in zip(results, configs)
    )
    return RunFolder(out, kind, tasks, tuple(rounds))


def task_folder_from_result(
    task_dir: Path, result: OptimizationResult, config: OptimizeJobConfig
) -> TaskFolder:
    if config.task.name != result.task_id:
        raise ValueError(
            f"{task_dir}: config is for task {config.task.name!r}, the result for "
            f"{result.task_id!r}"
        )
    points, initial_prompt, candidates = history_points(
        history_table(result).to_pylist(), task_dir / layout.HISTORY
    )
    budget = result.budget
    return TaskFolder(
        path=Path(task_dir),
        config=config,
        task_id=result.task_id,
        seed=result.seed,
        initial_prompt=initial_prompt,
        best_prompt=result.best.text,
        initial_loss=result.initial.loss,
        best_loss=result.best.loss,
        iterations=len(result.history),
        stop_reason=result.stop_reason,
        training_cost=Cost(
            budget.forward_passes,
            budget.tokens_scored,
            budget.tokens_generated,
            budget.wall_seconds,
        ),
        points=points,
        candidates_scored=candidates,
        evaluation=None,
        rejected_rewrites=rejection_counts(result.history),
    )
