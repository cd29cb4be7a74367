"""Cut a request table into batches for replicas and put the answers back together, checked.

Pure functions, so the guarantees a pool gives (input order, every request exactly once) are
tested without Ray.

Batches are sized by work, not by a fixed row count (`plan_batches`): each batch takes a share
of the rows still unplanned (guided self-scheduling), so a job starts with large batches, whose
fixed costs (a Ray task, dispatcher calls, serialization) are paid rarely, and ends with small
ones that let every replica finish at about the same time. A cap in rows, from the engine
seconds a batch may hold, bounds what a replica that dies mid-batch loses.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Batches in flight per replica: one runs on the engine while the next is prepared.
IN_FLIGHT_PER_REPLICA = 2


def plan_batches(
    n_rows: int, n_replicas: int, *, min_rows: int, max_rows: int | None = None
) -> list[int]:
    """Row counts of consecutive batches covering `n_rows`.

    Each batch takes 1 / (2 x replicas) of the rows left, so the first round of batches keeps
    every replica busy twice over and later ones shrink geometrically down to `min_rows`
    (about 2R x ln(n / (2R x min_rows)) batches in all, instead of n / fixed size).
    `max_rows` caps any batch (None: no cap).
    """
    if n_rows < 0 or n_replicas < 1 or min_rows < 1:
        raise ValueError(f"bad batch plan: {n_rows} rows, {n_replicas} replicas, min {min_rows}")
    share = IN_FLIGHT_PER_REPLICA * n_replicas
    cap = max(1, max_rows) if max_rows is not None else n_rows
    sizes, left = [], n_rows
    while left > 0:
        size = min(left, cap, max(min_rows, math.ceil(left / share)))
        sizes.append(size)
        left -= size
    return sizes


def fixed_batches(n_rows: int, rows: int) -> list[int]:
    """Row counts of batches of exactly `rows` (the last one shorter)."""
    if rows <= 0:
        raise ValueError(f"rows per batch must be positive, got {rows}")
    return [min(rows, n_rows - start) for start in range(0, n_rows, rows)]


def split_rows(table: pa.Table, sizes: Sequence[int] | int) -> list[pa.Table]:
    """Consecutive zero-copy slices of `table`: of the given sizes, or of at most `sizes` rows
    each when it is one number."""
    if isinstance(sizes, int):
        sizes = fixed_batches(table.num_rows, sizes)
    if sum(sizes) != table.num_rows:
        raise ValueError(f"batch sizes add up to {sum(sizes)}, the table has {table.num_rows}")
    starts = np.cumsum([0, *sizes[:-1]]) if sizes else []
    return [table.slice(int(start), size) for start, size in zip(starts, sizes)]


def in_batch_order(batches: Sequence[pa.Table], parts: Sequence[pa.Table]) -> list[pa.Table]:
    """Result parts (one per non-empty batch, in any order) sorted back into batch order, by
    the request id each batch starts with."""
    first_ids = [batch.column("request_id")[0].as_py() for batch in batches if batch.num_rows]
    position = {request_id: index for index, request_id in enumerate(first_ids)}
    keyed = []
    for part in parts:
        if part.num_rows == 0:
            continue
        first = part.column("request_id")[0].as_py()
        if first not in position:
            raise RuntimeError(
                f"a replica answered a batch starting at request {first!r}, "
                "which no batch starts with"
            )
        keyed.append((position[first], part))
    return [part for _, part in sorted(keyed, key=lambda pair: pair[0])]


def join_scores(requests: pa.Table, result: pa.Table) -> pa.Table:
    """The requests with a scoring result's columns beside them (zero-copy), after checking
    that the result answers every request exactly once, in order."""
    check_answered(requests, result, samples=None)
    columns = [name for name in result.column_names if name != "request_id"]
    for name in columns:
        requests = requests.append_column(result.schema.field(name), result.column(name))
    return requests


def check_answered(requests: pa.Table, result: pa.Table, samples: pa.ChunkedArray | None) -> None:
    """Every request answered in order: once each, or `samples[i]` times in a row for request
    i (a generation's n). Compared as whole arrays; the slow diagnosis only on a mismatch."""
    ids = requests.column("request_id").to_numpy()
    if samples is not None:
        ids = np.repeat(ids, samples.to_numpy())
    if not np.array_equal(result.column("request_id").to_numpy(), ids):
        reassemble(requests, [result])  # raises, naming the missing and repeated requests
        raise RuntimeError("replica results do not match the requests (sample counts differ)")


def reassemble(requests: pa.Table, chunk_results: list[pa.Table]) -> pa.Table:
    """Concatenate chunk results (in chunk order) and check they answer `requests` exactly.

    A result may hold several rows per request (n samples of a generation), but the requests
    must appear in input order, each as one consecutive run.
    """
    if not chunk_results:
        if requests.num_rows:
            raise RuntimeError(f"{requests.num_rows} requests, no results")
        return requests.slice(0, 0)
    combined = pa.concat_tables(chunk_results, promote_options="default")
    expected = requests.column("request_id").to_pylist()
    seen = _runs(combined.column("request_id").to_pylist())
    if seen != expected:
        missing = sorted(set(expected) - set(seen))
        repeated = sorted(r for r, count in Counter(seen).items() if count > 1)
        raise RuntimeError(
            "replica results do not match the requests: "
            f"missing {missing[:10]}, repeated {repeated[:10]}, "
            f"{'order differs' if not missing and not repeated else ''}".rstrip(", ")
        )
    return combined


def _runs(ids: list) -> list:
    """[1, 1, 2, 3, 3] -> [1, 2, 3]: one entry per consecutive run."""
    return [value for index, value in enumerate(ids) if index == 0 or ids[index - 1] != value]


def total(table: pa.Table, column: str) -> int:
    """Sum of an integer column (0 for an empty table)."""
    return pc.sum(table.column(column)).as_py() or 0
