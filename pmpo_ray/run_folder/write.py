"""Write a run folder: a task folder all at once, the suite's final files, evaluation results.

A task folder is written into a staging folder beside it and renamed into place, so a crash
never leaves a half-written task; every other file is written atomically (temp file, rename).
suite.json is written last: its presence marks a finished suite.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pmpo_ray.jobs import OptimizeJobConfig
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.fields import parse_record
from pmpo_ray.run_folder.files import (
    BEST_PROMPT,
    ITERATIONS,
    SUITE_SUMMARY,
    ResultFile,
    SuiteTaskSummary,
)
from pmpo_ray.run_folder.records import Evaluation
from pmpo_ray.store import (
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    check_linked_folder,
    new_folder_beside,
)

HISTORY_SCHEMA = pa.schema(
    [
        ("iteration", pa.int64()),
        ("candidate_id", pa.string()),
        ("parent_id", pa.string()),
        ("role", pa.string()),  # initial | parent | rewrite
        ("hard_case", pa.string()),
        ("text", pa.string()),
        ("loss", pa.float64()),
        ("kept", pa.bool_()),  # in the population after this iteration
    ]
)


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Fail before the optimization, not after: no folder in the way, its parent exists; a
    link must point to an existing folder (store.check_linked_folder: it is followed)."""
    run_dir = Path(run_dir)
    check_linked_folder(run_dir)
    if run_dir.exists() and not overwrite:
        raise ValueError(f"{run_dir} exists; choose another --out or pass --overwrite")
    if not run_dir.parent.is_dir():
        raise ValueError(f"{run_dir}: folder {run_dir.parent} does not exist")


def dump_yaml(data) -> str:
    """YAML text of plain data; libyaml's emitter where PyYAML has it (the same text for our
    configs, five times faster: a suite of 1,000 tasks writes 1,000 of them)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False)


def write_task_run(
    result: OptimizationResult,
    run_dir: Path,
    config: OptimizeJobConfig,
    *,
    overwrite: bool = False,
) -> None:
    """The task folder of `result`, with `config` (the task's own resolved job config) as its
    config.yaml; an existing folder is replaced only with `overwrite`."""
    run_dir = Path(run_dir)
    if config.task.name != result.task_id:
        raise ValueError(
            f"{run_dir}: config is for task {config.task.name!r}, the result for {result.task_id!r}"
        )
    check_run_dir(run_dir, overwrite)
    if run_dir.is_symlink():  # a link to a folder: that folder is replaced, the link stays
        run_dir = run_dir.resolve()
    staging = new_folder_beside(run_dir, layout.staging_prefix(run_dir))
    old = staging.with_name(staging.name + ".old")
    try:
        pq.write_table(history_table(result), staging / layout.HISTORY)
        iterations = ITERATIONS.dump_python(result.history, mode="json")
        atomic_write_json(iterations, staging / layout.ITERATIONS)
        best = BEST_PROMPT.dump_python(result.best, mode="json")
        atomic_write_json(best, staging / layout.BEST_PROMPT)
        (staging / layout.BEST_PROMPT_TEXT).write_text(result.best.text + "\n", encoding="utf-8")
        summary = ResultFile.of(result).model_dump(mode="json")
        atomic_write_json(summary, staging / layout.RESULT)
        config_text = dump_yaml(config.model_dump(mode="json"))
        (staging / layout.CONFIG).write_text(config_text, encoding="utf-8")
        # The old folder steps aside, and comes back if the new one cannot move in.
        if run_dir.exists():
            run_dir.rename(old)
        try:
            staging.rename(run_dir)
        except BaseException:
            if old.exists():
                old.rename(run_dir)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_suite_tasks(
    out: Path, results: Sequence[OptimizationResult], configs: Sequence[OptimizeJobConfig]
) -> None:
    """Every task folder of a suite, tasks/<id>/, each with its own resolved config
    (`task_job_config`); a folder left by an earlier attempt is replaced."""
    if len(results) != len(configs):
        raise ValueError(f"{out}: {len(results)} results but {len(configs)} task configs")
    (Path(out) / layout.TASKS_DIR).mkdir(parents=True, exist_ok=True)
    for result, config in zip(results, configs):
        write_task_run(result, layout.task_dir(out, result.task_id), config, overwrite=True)


def history_table(result: OptimizationResult) -> pa.Table:
    """history.parquet: the initial prompt, then every candidate of every iteration."""
    rows = [
        {
            "iteration": 0,
            "candidate_id": result.initial.candidate_id,
            "parent_id": None,
            "role": "initial",
            "hard_case": None,
            "text": result.initial.text,
            "loss": result.initial.loss,
            "kept": True,
        }
    ]
    for record in result.history:
        parents = set(record.parent_ids)
        for candidate in record.candidates:
            rows.append(
                {
                    "iteration": record.iteration,
                    "candidate_id": candidate.candidate_id,
                    "parent_id": candidate.parent_id,
                    "role": "parent" if candidate.candidate_id in parents else "rewrite",
                    "hard_case": record.hard_case_of.get(candidate.candidate_id),
                    "text": candidate.text,
                    "loss": candidate.loss,
                    "kept": candidate.candidate_id in record.population,
                }
            )
    return pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)


def suite_summary(results: Sequence[OptimizationResult]) -> dict:
    """suite.json: task id -> losses, iterations, stop reason, best prompt and work."""
    summary = {result.task_id: SuiteTaskSummary.of(result) for result in results}
    return SUITE_SUMMARY.dump_python(summary, mode="json")


def write_suite_summary(out: Path, config: dict, results: Sequence[OptimizationResult]) -> dict:
    """The suite's own config.yaml (the whole suite config), then suite.json; returns the
    summary. Call it after every task folder is written."""
    out = Path(out)
    summary = suite_summary(results)
    atomic_write_text(dump_yaml(config), out / layout.CONFIG)
    atomic_write_json(summary, layout.suite_summary_path(out))
    return summary


def write_evaluation(task_dir: Path, evaluation: dict, predictions: pa.Table) -> None:
    """A task's evaluation.json and predictions.parquet, each atomically. The content is
    checked as its record first, read back from the JSON it becomes, so a file that would
    not read is never written."""
    path = Path(task_dir) / layout.EVALUATION
    record = parse_record(json.dumps(evaluation), Evaluation, f"{path} (being written)")
    atomic_write_parquet(predictions, Path(task_dir) / layout.PREDICTIONS)
    atomic_write_json(record.model_dump(mode="json"), path)


def remove_results(out: Path) -> list[Path]:
    """Remove what `layout.result_paths` lists (a link is removed, never followed); returns it."""
    paths = layout.result_paths(out)
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return paths
