"""The engine client in this process: a scorer engine and, optionally, a separate rewriter.

What `pmpo optimize`, `pmpo evaluate` and `pmpo score` use without Ray, and what a notebook
gets by default. It times every call so the busy figures read like a replica pool's.
"""

from __future__ import annotations

import time
from typing import Sequence

import pyarrow as pa

from pmpo_ray.engines.dispatcher import ReplicaWork


class InProcessClient:
    """`score`/`count_tokens` go to the scorer engine, `generate` to the engine its caller
    names: the rewriter (the scorer when there is none) or the scorer (held-out answers). The
    client owns its engines: `close` stops them."""

    def __init__(self, scorer, rewriter=None):
        self.engines = {"scorer": scorer}
        if rewriter is not None and rewriter is not scorer:
            self.engines["rewriter"] = rewriter
        self.totals = {name: ReplicaWork() for name in self.engines}

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return self._call("scorer", "score", requests, with_token_logprobs)

    def generate(self, requests: pa.Table, pool: str = "rewriter") -> pa.Table:
        if pool not in ("rewriter", "scorer"):
            raise ValueError(f"generate: pool must be 'rewriter' or 'scorer'; got {pool!r}")
        return self._call(pool if pool in self.engines else "scorer", "generate", requests)

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

    def _call(self, name: str, method: str, requests: pa.Table, *args) -> pa.Table:
        started = time.perf_counter()
        result = getattr(self.engines[name], method)(requests, *args)
        tokens = sum(result.column("n_tokens").to_pylist())
        self.totals[name].record(started, requests.num_rows, tokens)
        return result
