"""The record of a run folder built from a finished optimization in memory, not its files.

The suite driver evaluates right after writing; building the record from the results it holds
(through the same file records the writer dumps, put together by the same `TaskFolder.of` the
reader uses) spares re-reading what it just wrote, and gives exactly what `read_run_folder`
would return, less the evaluations not yet run (and the round log, unless given).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pmpo_ray.jobs import OptimizeJobConfig
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.files import ResultFile
from pmpo_ray.run_folder.records import RunFolder, TaskFolder
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
    return TaskFolder.of(
        Path(task_dir),
        config,
        ResultFile.of(result),
        history_table(result).to_pylist(),
        result.best.text,
        evaluation=None,
    )
