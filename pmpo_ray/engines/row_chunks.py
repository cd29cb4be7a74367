"""Cut a request table into chunks for replicas and put the answers back together, checked.

Pure functions, so the guarantees a pool gives (input order, every request exactly once) are
tested without Ray.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa


def split_rows(table: pa.Table, max_rows: int) -> list[pa.Table]:
    """Consecutive slices of at most `max_rows` rows (zero-copy)."""
    if max_rows <= 0:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    return [table.slice(start, max_rows) for start in range(0, table.num_rows, max_rows)]


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
