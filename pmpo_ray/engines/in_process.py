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
    """`score`/`count_tokens` go to the scorer engine, `generate` to the rewriter (the scorer
    when there is none). The client owns its engines: `close` stops them."""

    def __init__(self, scorer, rewriter=None):
        self.engines = {"scorer": scorer}
        if rewriter is not None and rewriter is not scorer:
            self.engines["rewriter"] = rewriter
        self.totals = {name: ReplicaWork() for name in self.engines}

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return self._call("scorer", "score", requests, with_token_logprobs)

    def generate(self, requests: pa.Table) -> pa.Table:
        name = "rewriter" if "rewriter" in self.engines else "scorer"
        return self._call(name, "generate", requests)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.engines["scorer"].count_tokens(texts)

    def stats(self) -> dict[str, dict]:
        return {name: {"replicas": 1, **self.totals[name].as_dict()} for name in self.engines}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    def _call(self, name: str, method: str, requests: pa.Table, *args) -> pa.Table:
        started = time.perf_counter()
        result = getattr(self.engines[name], method)(requests, *args)
        tokens = sum(result.column("n_tokens").to_pylist())
        self.totals[name].record(started, requests.num_rows, tokens)
        return result
