"""The engine client in this process: a scorer engine and, optionally, a separate rewriter.

What `pmpo optimize`, `pmpo evaluate` and `pmpo score` use without Ray, and what a notebook
gets by default. It times every call so the busy figures read like a replica pool's.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import pyarrow as pa

from pmpo_ray.engines.dispatcher import ReplicaWork
from pmpo_ray.engines.engine import Engine


class InProcessClient:
    """`score`/`count_tokens` go to the scorer engine, `generate` to the engine its caller
    names: the rewriter (the scorer when there is none) or the scorer (held-out answers). The
    client owns its engines: `close` stops them."""

    def __init__(self, scorer: Engine, rewriter: Engine | None = None):
        self.engines = {"scorer": scorer}
        if rewriter is not None and rewriter is not scorer:
            self.engines["rewriter"] = rewriter
        self.totals = {name: ReplicaWork() for name in self.engines}

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        scorer = self.engines["scorer"]
        return self._timed("scorer", requests, lambda: scorer.score(requests, with_token_logprobs))

    def generate(self, requests: pa.Table, pool: str = "rewriter") -> pa.Table:
        if pool not in ("rewriter", "scorer"):
            raise ValueError(f"generate: pool must be 'rewriter' or 'scorer'; got {pool!r}")
        name = pool if pool in self.engines else "scorer"
        return self._timed(name, requests, lambda: self.engines[name].generate(requests))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.engines["scorer"].count_tokens(texts)

    def stats(self) -> dict[str, dict]:
        # In process a job is one call, one batch.
        return {
            name: {"replicas": 1, "jobs": work.calls, "batches": work.calls, **work.as_dict()}
            for name, work in self.totals.items()
        }

    def last_job_batches(self) -> int:
        return 1  # in process, a job is one call

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    def _timed(self, name: str, requests: pa.Table, call: Callable[[], pa.Table]) -> pa.Table:
        """`call`'s result, its time and work added to engine `name`'s totals."""
        started = time.perf_counter()
        result = call()
        tokens = sum(result.column("n_tokens").to_pylist())
        self.totals[name].record(started, requests.num_rows, tokens)
        return result
