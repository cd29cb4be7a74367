"""Read a finished run folder back: which tasks, their configs, initial and best prompts.

Two layouts: a single-task run (`pmpo optimize`: result.json and config.yaml at the top) and a
suite run (`pipelines.optimize_suite`: suite.json at the top, one task run under tasks/<id>/,
each holding the suite's config.yaml). Evaluation and reports both start here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from pmpo_ray.config import EngineConfig, PromptFormat, parse_config
from pmpo_ray.evaluation.config import EvaluationConfig
from pmpo_ray.pmpo.config import OptimizeJobConfig, OptimizerConfig
from pmpo_ray.tasks.config import TaskConfig

TASK_FILES = ("result.json", "config.yaml", "history.parquet", "best_prompt.json")


@dataclass(frozen=True)
class TaskFolder:
    path: Path
    task: TaskConfig
    optimizer: OptimizerConfig
    result: dict  # result.json
    initial_prompt: str
    best_prompt: str
    candidates_scored: int  # distinct prompts scored on the training split


@dataclass(frozen=True)
class RunFolder:
    path: Path
    kind: str  # "suite" | "task"
    tasks: tuple[TaskFolder, ...]
    engine: EngineConfig  # the scorer's engine: evaluation uses the same model
    prompt_format: PromptFormat
    evaluation: EvaluationConfig


def task_dirs(run_dir: Path) -> tuple[str, tuple[Path, ...]]:
    """("task", the folder itself) for a `pmpo optimize` run, ("suite", tasks/*/) for a suite."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder")
    if (run_dir / "result.json").is_file():
        return "task", (run_dir,)
    folders = tuple(sorted(p.parent for p in (run_dir / "tasks").glob("*/result.json")))
    if not folders:
        raise ValueError(
            f"{run_dir}: not a run folder (no result.json of a task, no tasks/*/result.json "
            "of a suite)"
        )
    return "suite", folders


def read_run_folder(path: Path) -> RunFolder:
    kind, folders = task_dirs(path)
    raw = _read_yaml(folders[0] / "config.yaml")
    tasks = tuple(_task_folder(d, _read_yaml(d / "config.yaml")) for d in folders)
    engine, prompt_format, evaluation = _shared_settings(raw, folders[0] / "config.yaml")
    return RunFolder(Path(path), kind, tasks, engine, prompt_format, evaluation)


def _shared_settings(raw: dict, source: Path):
    if "tasks" in raw:
        from pmpo_ray.suite_config import SuiteConfig

        suite = parse_config(SuiteConfig, raw, str(source))
        return suite.scorer.engine, suite.prompt_format, suite.evaluation
    job = parse_config(OptimizeJobConfig, raw, str(source))
    return job.scorer, job.prompt_format, job.evaluation


def _task_folder(task_dir: Path, raw: dict) -> TaskFolder:
    missing = [name for name in TASK_FILES if not (task_dir / name).is_file()]
    if missing:
        raise ValueError(f"{task_dir}: incomplete task run, missing {', '.join(missing)}")
    result = json.loads((task_dir / "result.json").read_text(encoding="utf-8"))
    task, optimizer = _task_config(raw, result["task_id"], task_dir / "config.yaml")
    history = pq.read_table(task_dir / "history.parquet").to_pylist()
    initial = next(row["text"] for row in history if row["role"] == "initial")
    best = json.loads((task_dir / "best_prompt.json").read_text(encoding="utf-8"))
    return TaskFolder(
        path=task_dir,
        task=task,
        optimizer=optimizer,
        result=result,
        initial_prompt=initial,
        best_prompt=best["text"],
        candidates_scored=len({row["candidate_id"] for row in history}),
    )


def _task_config(raw: dict, task_id: str, source: Path) -> tuple[TaskConfig, OptimizerConfig]:
    if "tasks" not in raw:
        job = parse_config(OptimizeJobConfig, raw, str(source))
        return job.task, job.optimizer
    from pmpo_ray.suite_config import SuiteConfig

    suite = parse_config(SuiteConfig, raw, str(source))
    for entry in suite.tasks:
        if entry.task.name == task_id:
            return entry.task, suite.optimizer_for(entry)
    raise ValueError(f"{source}: task {task_id!r} is not in the suite config")


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the run's config ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping")
    return raw
