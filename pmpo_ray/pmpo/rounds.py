"""Drive task runs round by round: one generation call and one scoring call per round, for
all active tasks together, however many tasks there are.

The engines are anything with `generate(table)` / `score(table)`: a bare engine, a replica
pool, or a Ray Data fan-out over a pool. Request ids are renumbered into one table and mapped
back, so each task sees only its own rows.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA

RoundCallback = Callable[[int, Sequence[TaskRun], dict], None]


def combine_requests(tables: Sequence[pa.Table]) -> tuple[pa.Table, list[int]]:
    """One table with request ids made unique by offsetting each task's local ids."""
    offsets, parts, offset = [], [], 0
    for table in tables:
        offsets.append(offset)
        ids = pc.add(table.column("request_id"), pa.scalar(offset, pa.int64()))
        parts.append(
            table.set_column(table.schema.get_field_index("request_id"), "request_id", ids)
        )
        offset += table.num_rows
    if not parts:
        return pa.table({}), []
    return pa.concat_tables(parts, promote_options="default"), offsets


def split_results(result: pa.Table, offsets: Sequence[int], sizes: Sequence[int]) -> list[pa.Table]:
    """Each task's rows of a combined result, with its local request ids restored."""
    ids = result.column("request_id")
    parts = []
    for offset, size in zip(offsets, sizes):
        mask = pc.and_(pc.greater_equal(ids, offset), pc.less(ids, offset + size))
        part = result.filter(mask)
        local = pc.subtract(part.column("request_id"), pa.scalar(offset, pa.int64()))
        parts.append(
            part.set_column(part.schema.get_field_index("request_id"), "request_id", local)
        )
    return parts


def run_stage(
    tables: Sequence[pa.Table], call: Callable[[pa.Table], pa.Table], empty: pa.Table
) -> list[pa.Table]:
    """Send every task's requests through one engine call (none when nobody asked)."""
    combined, offsets = combine_requests(tables)
    if combined.num_rows == 0:
        return [empty for _ in tables]
    return split_results(call(combined), offsets, [t.num_rows for t in tables])


def column_total(tables: Sequence[pa.Table], column: str) -> int:
    """Sum of a count column over result tables (tables without it count zero)."""
    return sum(pc.sum(t.column(column)).as_py() or 0 for t in tables if column in t.column_names)


def run_rounds(
    runs: Sequence[TaskRun],
    *,
    generator,
    scorer,
    on_round: RoundCallback | None = None,
    rounds_done: int = 0,
) -> list[OptimizationResult]:
    """Rounds until every run is done; `on_round(index, runs, stats)` sees each round's
    per-stage wall time, request counts and tokens (generated; read by the scorer)."""
    round_index = rounds_done  # > 0 when resuming runs restored from a checkpoint
    while active := [run for run in runs if not run.done]:
        round_index += 1
        stats = {"round": round_index, "active_tasks": len(active)}
        started = time.perf_counter()
        plans = [run.plan_generation() for run in active]
        no_samples = GENERATE_RESULT_SCHEMA.empty_table()
        generated = run_stage(plans, generator.generate, no_samples)
        for run, samples in zip(active, generated):
            run.take_generations(samples)
        stats["generation_requests"] = sum(t.num_rows for t in plans)
        stats["generation_tokens"] = column_total(generated, "n_tokens")
        stats["generation_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        requests = [run.plan_scoring() for run in active]
        empty_scored = pa.table({"request_id": pa.array([], pa.int64())})
        scored = run_stage(requests, scorer.score, empty_scored)
        for run, rows in zip(active, scored):
            run.take_scores(rows)
        stats["scoring_requests"] = sum(t.num_rows for t in requests)
        stats["scoring_tokens"] = column_total(scored, "n_input_tokens")  # a naive scorer's
        stats["scoring_tokens_computed"] = column_total(scored, "n_computed_tokens")
        stats["scoring_seconds"] = time.perf_counter() - started
        if on_round is not None:
            on_round(round_index, runs, stats)
    return [run.result() for run in runs]
