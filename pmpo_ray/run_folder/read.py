"""Read a run folder (one task, or a suite of tasks) from its files into frozen records.

Evaluation and reports both start here, so a broken run folder fails in one place, with the
file and field named. A task folder's config.yaml is that task's own resolved job config, so
one task folder of a suite reads (and evaluates) on its own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq

from pmpo_ray.config import parse_config, read_yaml_mapping
from pmpo_ray.pmpo.config import OptimizeJobConfig
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.evaluation_file import read_evaluation
from pmpo_ray.run_folder.fields import checked, read_json
from pmpo_ray.run_folder.records import Cost, Point, RunFolder, TaskFolder
from pmpo_ray.run_folder.swap import finish_interrupted_swap


def read_run_folder(path: Path, *, evaluations: bool = True) -> RunFolder:
    """A single task's folder, or a suite's: its tasks in the suite's order (suite.json's).
    `evaluations` False leaves evaluation.json files unread (evaluating does not need them,
    and redoes one that is damaged)."""
    path = Path(path)
    kind, folders = layout.task_dirs(path)
    tasks = [read_task_folder(folder, evaluations=evaluations) for folder in folders]
    if kind == "task":
        return RunFolder(path, kind, tuple(tasks))
    summary_path = layout.suite_summary_path(path)
    order = list(read_json(summary_path)) if summary_path.is_file() else []
    tasks.sort(key=lambda t: order.index(t.task_id) if t.task_id in order else len(order))
    return RunFolder(path, kind, tuple(tasks), read_rounds(layout.rounds_log_path(path)))


def require_finished(path: Path) -> None:
    """Refuse, in one line, a suite whose optimization has not finished; a swap an --overwrite
    run left half done is finished first (it is a finished run)."""
    finish_interrupted_swap(Path(path))
    if layout.suite_unfinished(Path(path)):
        raise layout.unfinished_suite_error(path)


def read_task_folder(task_dir: Path, *, evaluations: bool = True) -> TaskFolder:
    task_dir = Path(task_dir)
    missing = [name for name in layout.TASK_REQUIRED if not (task_dir / name).is_file()]
    if missing:
        raise ValueError(f"{task_dir}: incomplete task run, missing {', '.join(missing)}")
    result_path = task_dir / layout.RESULT
    result = read_json(result_path)
    task_id = checked(result, "task_id", result_path, str)
    config = read_task_config(task_dir / layout.CONFIG)
    if config.task.name != task_id:
        raise ValueError(
            f"{task_dir / layout.CONFIG}: config of task {config.task.name!r}, but "
            f"{result_path} is task {task_id!r}"
        )
    budget = checked(result, "budget", result_path, dict)
    points, initial_prompt, candidates = read_history(task_dir / layout.HISTORY)
    best_path = task_dir / layout.BEST_PROMPT
    evaluation_path = task_dir / layout.EVALUATION
    return TaskFolder(
        path=task_dir,
        config=config,
        task_id=task_id,
        seed=checked(result, "seed", result_path, int),
        initial_prompt=initial_prompt,
        best_prompt=checked(read_json(best_path), "text", best_path, str),
        initial_loss=checked(result, "initial_loss", result_path),
        best_loss=checked(result, "best_loss", result_path),
        iterations=checked(result, "iterations", result_path, int),
        stop_reason=str(result.get("stop_reason", "")),
        training_cost=Cost(
            forward_passes=checked(budget, "forward_passes", result_path, int),
            tokens_scored=checked(budget, "tokens_scored", result_path, int),
            tokens_generated=checked(budget, "tokens_generated", result_path, int),
            seconds=checked(budget, "wall_seconds", result_path),
        ),
        points=points,
        candidates_scored=candidates,
        evaluation=read_evaluation(evaluation_path)
        if evaluations and evaluation_path.exists()
        else None,
        rejected_rewrites=dict(result.get("rejected_rewrites", {})),
    )


def read_task_config(path: Path) -> OptimizeJobConfig:
    raw = read_yaml_mapping(path)
    if "tasks" in raw:
        raise ValueError(
            f"{path}: holds a whole suite's config (written by an older pmpo-ray); a task "
            "folder now holds its own task's config, so run the suite again to read it"
        )
    return parse_config(OptimizeJobConfig, raw, str(path))


def read_history(path: Path) -> tuple[tuple[Point, ...], str, int]:
    """Every scored candidate, the initial prompt's text (the row with role 'initial'), and
    how many distinct candidates were scored."""
    try:
        table = pq.read_table(path, columns=["iteration", "candidate_id", "role", "text", "loss"])
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except Exception as error:  # pyarrow raises several types for bad files and columns
        raise ValueError(f"{path}: cannot read ({error})") from None
    return history_points(table.to_pylist(), path)


def history_points(rows: list[dict], where: Path | str) -> tuple[tuple[Point, ...], str, int]:
    """What history rows (as history.parquet holds them) say: points, initial text, count."""
    initial = [row for row in rows if row["role"] == "initial"]
    if not initial:
        raise ValueError(f"{where}: no row with role 'initial'")
    points = tuple(
        Point(row["iteration"], math.nan if row["loss"] is None else row["loss"], row["role"])
        for row in rows
    )
    return points, initial[0]["text"], len({row["candidate_id"] for row in rows})


def read_rounds(path: Path) -> tuple[dict, ...]:
    """rounds.jsonl, one object per finished round; absent means no round finished."""
    if not path.is_file():
        return ()
    rounds = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number}: not valid JSON ({error})") from None
        if not isinstance(row, dict) or "round" not in row:
            raise ValueError(f"{path} line {number}: expected an object with field 'round'")
        rounds.append(row)
    return tuple(rounds)
