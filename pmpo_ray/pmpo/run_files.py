"""Write a finished optimization to a run folder, all at once or not at all.

Files: history.parquet (one row per candidate per iteration), iterations.json (hard cases,
mask analyses, rejected rewrites, budgets), best_prompt.json/.txt, result.json, config.yaml.
Everything is written into a staging folder that is renamed into place at the end, so a crash
never leaves a half-written run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.store import atomic_write_json

HISTORY_SCHEMA = pa.schema(
    [
        ("iteration", pa.int64()),
        ("candidate_id", pa.string()),
        ("parent_id", pa.string()),
        ("role", pa.string()),  # parent | variant
        ("hard_case", pa.string()),
        ("text", pa.string()),
        ("loss", pa.float64()),
        ("kept", pa.bool_()),  # in the population after this iteration
    ]
)


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not overwrite:
        raise ValueError(f"{run_dir} exists; choose another --out or pass --overwrite")
    if not run_dir.parent.is_dir():
        raise ValueError(f"{run_dir}: folder {run_dir.parent} does not exist")


def history_table(result: OptimizationResult) -> pa.Table:
    rows = [initial_row(result)]
    for record in result.history:
        parents = set(record.parent_ids)
        for candidate in record.candidates:
            rows.append(
                {
                    "iteration": record.iteration,
                    "candidate_id": candidate.candidate_id,
                    "parent_id": candidate.parent_id,
                    "role": "parent" if candidate.candidate_id in parents else "variant",
                    "hard_case": record.hard_case_of.get(candidate.candidate_id),
                    "text": candidate.text,
                    "loss": candidate.loss,
                    "kept": candidate.candidate_id in record.population,
                }
            )
    return pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)


def initial_row(result: OptimizationResult) -> dict:
    return {
        "iteration": 0,
        "candidate_id": result.initial.candidate_id,
        "parent_id": None,
        "role": "initial",
        "hard_case": None,
        "text": result.initial.text,
        "loss": result.initial.loss,
        "kept": True,
    }


def summary(result: OptimizationResult) -> dict:
    return {
        "task_id": result.task_id,
        "seed": result.seed,
        "initial_loss": result.initial.loss,
        "best_loss": result.best.loss,
        "best_candidate": result.best.candidate_id,
        "iterations": len(result.history),
        "stop_reason": result.stop_reason,
        "budget": asdict(result.budget),
        "lineage": result.lineage,
    }


def write_run(
    result: OptimizationResult, run_dir: Path, config: dict, overwrite: bool = False
) -> None:
    check_run_dir(run_dir, overwrite)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        pq.write_table(history_table(result), staging / "history.parquet")
        atomic_write_json([asdict(r) for r in result.history], staging / "iterations.json")
        atomic_write_json(asdict(result.best), staging / "best_prompt.json")
        (staging / "best_prompt.txt").write_text(result.best.text + "\n", encoding="utf-8")
        atomic_write_json(summary(result), staging / "result.json")
        (staging / "config.yaml").write_text(
            yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
        )
        if run_dir.exists():
            shutil.rmtree(run_dir)
        staging.rename(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
