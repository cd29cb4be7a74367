"""Read a run folder (one task, or a suite of tasks) from its files into frozen records.

Evaluation and reports both start here, so a broken run folder fails in one place, with the
file and field named. A task folder's config.yaml is that task's own resolved job config, so
one task folder of a suite reads (and evaluates) on its own.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from pmpo_ray.config import parse_config, read_yaml_mapping
from pmpo_ray.jobs import ENGINE_KEYS, OptimizeJobConfig
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.evaluation_file import read_evaluation
from pmpo_ray.run_folder.fields import parse_record, read_record
from pmpo_ray.run_folder.files import BEST_PROMPT, SUITE_SUMMARY, ResultFile, RoundLine
from pmpo_ray.run_folder.records import RunFolder, TaskFolder
from pmpo_ray.run_folder.swap import finish_interrupted_swap
from pmpo_ray.store import read_user_text

POOLS = ("scorer", "rewriter")  # a job config's pools, which once held their engine itself


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
    order = list(read_suite_summary(path)) if summary_path.is_file() else []
    tasks.sort(key=lambda t: order.index(t.task_id) if t.task_id in order else len(order))
    return RunFolder(path, kind, tuple(tasks), read_rounds(layout.rounds_log_path(path)))


def read_suite_summary(out: Path) -> dict:
    """suite.json, checked, as JSON values: task id -> its summary, in the suite's order."""
    summary = read_record(layout.suite_summary_path(out), SUITE_SUMMARY)
    return SUITE_SUMMARY.dump_python(summary, mode="json")


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
    # result.json first: its format marker tells a folder of another version before
    # anything else is misread.
    result = read_record(task_dir / layout.RESULT, ResultFile)
    evaluation_path = task_dir / layout.EVALUATION
    return TaskFolder.of(
        task_dir,
        read_task_config(task_dir / layout.CONFIG),
        result,
        read_history(task_dir / layout.HISTORY),
        read_record(task_dir / layout.BEST_PROMPT, BEST_PROMPT).text,
        read_evaluation(evaluation_path) if evaluations and evaluation_path.exists() else None,
    )


def read_task_config(path: Path) -> OptimizeJobConfig:
    return parse_config(OptimizeJobConfig, pools_of_engines(read_yaml_mapping(path)), str(path))


def pools_of_engines(raw: dict) -> dict:
    """config.yaml written before the scorer and rewriter became pools holds an engine config
    under `scorer:`/`rewriter:`; it is that pool's engine (a finished run's replicas no longer
    matter), so it reads as `{engine: ...}`."""
    return {**raw, **{role: {"engine": raw[role]} for role in POOLS if is_engine(raw.get(role))}}


def is_engine(value) -> bool:
    """An engine config where a pool goes (the shape jobs.engine_not_pool refuses)."""
    return (
        isinstance(value, dict)
        and "engine" not in value
        and any(key in value for key in ENGINE_KEYS)
    )


def read_history(path: Path) -> list[dict]:
    """history.parquet's rows, the columns a task folder's record reads."""
    try:
        table = pq.read_table(path, columns=["iteration", "candidate_id", "role", "text", "loss"])
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except Exception as error:  # pyarrow raises several types for bad files and columns
        raise ValueError(f"{path}: cannot read ({error})") from None
    return table.to_pylist()


def read_rounds(path: Path) -> tuple[dict, ...]:
    """rounds.jsonl, one object per finished round; absent means no round finished."""
    if not path.is_file():
        return ()
    lines = read_user_text(path).splitlines()
    return tuple(
        parse_record(line, RoundLine, f"{path} line {number}").model_dump()
        for number, line in enumerate(lines, start=1)
        if line.strip()
    )
