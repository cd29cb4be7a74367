"""The engine client over Ray: each call is a Ray Data job over a pool of long-lived replicas.

Each `score` or `generate` call is one Ray Data job: the table is cut into batches sized by
work (engines/row_chunks.py: large first, shrinking towards the end, capped by the engine
seconds one may hold), each batch one block, each block one lightweight map task (no CPU
reserved) that borrows the least busy live replica from the pool's dispatcher
(engines/dispatcher.py) and runs its batch there; if that replica's process dies, the batch
runs again on another. Engines never start here; they live in the pool for the whole job.
Replicas send back request ids and result columns only; the driver puts the parts in batch
order, checks with whole arrays that every request was answered exactly once, in order, and
joins the result columns to the request table it kept.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Sequence

import pyarrow as pa

from pmpo_ray.engines.dispatcher import Method
from pmpo_ray.engines.replica_calls import (
    Send,
    call_replica,
    call_with_failover,
    pool_down_message,
    send_count_tokens,
    send_generate,
    send_score,
)
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.row_chunks import (
    IN_FLIGHT_PER_REPLICA,
    check_answered,
    fixed_batches,
    in_batch_order,
    join_scores,
    plan_batches,
    split_rows,
)
from pmpo_ray.errors import USER_ERROR_NAMES, PoolDownError, ReplicaError


class RayDataClient:
    """`score` and `generate` as Ray Data jobs over replica pools; counts jobs and batches.

    Scoring goes to the scorer pool. Generation goes to the pool its caller names: rewrites to
    the rewriter pool (the scorer pool when there is none), held-out answers to the scorer
    pool, since evaluation grades the model being optimized. The client owns its pools:
    `close` stops them.
    """

    def __init__(self, scorer: ReplicaPool, rewriter: ReplicaPool | None = None):
        import ray

        self.pools = {"scorer": scorer}
        if rewriter is not None and rewriter is not scorer:
            self.pools["rewriter"] = rewriter
        self.jobs = 0
        self.job_counts = {name: Counter() for name in self.pools}  # "jobs", "batches"
        self._jobs_lock = threading.Lock()
        self._this_thread = threading.local()  # what the calling thread's last job did
        # A generation job and a scoring job may run at once (pmpo/rounds.py overlaps them):
        # each is its own Ray Data execution, and replica errors are recorded per job.
        self.concurrent_jobs = True
        # From the pools' own reservations, not available_resources(): a pool shut down a
        # moment ago frees its CPUs asynchronously, and the question is about configuration.
        reserved = sum(pool.reserved_cpus for pool in self.pools.values())
        check_free_cpu(ray.cluster_resources().get("CPU", 0.0) - reserved)

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        send = partial(send_score, with_token_logprobs=with_token_logprobs)
        result = self._job("scorer", Method.SCORE, send, requests)
        return join_scores(requests, result)

    def generate(self, requests: pa.Table, pool: str = "rewriter") -> pa.Table:
        """`pool`: "rewriter" (rewrites, segmentations) or "scorer" (held-out answers)."""
        result = self._job(self._generation_pool(pool), Method.GENERATE, send_generate, requests)
        check_answered(requests, result, samples=requests.column("n"))
        return result

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Counted by the scorer replicas (prompts are measured in the scorer model's tokens),
        a large list spread over all of them at once."""
        pool = self.pools["scorer"]
        count = partial(
            call_with_failover,
            "scorer",
            pool.actors,
            pool.dispatcher,
            Method.COUNT_TOKENS,
            send_count_tokens,
        )
        parts = split_texts(list(texts), len(pool.actors))
        if len(parts) <= 1:
            return count(texts)
        with ThreadPoolExecutor(max_workers=len(parts)) as threads:
            return [n for part in threads.map(count, parts) for n in part]

    def stats(self) -> dict[str, dict]:
        """Per pool: replicas, live replicas, jobs, and the batches (calls), rows, tokens,
        busy seconds and replica preparation CPU seconds they summed."""
        totals = {}
        for name, pool in self.pools.items():
            per_replica = pool.stats()
            totals[name] = {"replicas": len(pool.actors), "live": pool.health()["live"]}
            for key in ("calls", "rows", "tokens", "busy_seconds", "prep_cpu_seconds"):
                totals[name][key] = sum(stats.get(key, 0) for stats in per_replica)
            totals[name]["jobs"] = self.job_counts[name]["jobs"]
            totals[name]["batches"] = self.job_counts[name]["batches"]
            totals[name]["by_method"] = pool.stats_by_method()
        return totals

    def last_job_batches(self) -> int | None:
        """Batches of the last job this thread ran (jobs of two threads may overlap)."""
        return getattr(self._this_thread, "batches", None)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()

    def _generation_pool(self, pool: str) -> str:
        if pool not in ("rewriter", "scorer"):
            raise ValueError(f"generate: pool must be 'rewriter' or 'scorer'; got {pool!r}")
        return pool if pool in self.pools else "scorer"

    def _job(self, pool_name: str, method: Method, send: Send, requests: pa.Table) -> pa.Table:
        """One Ray Data job: the table cut into work-sized batches, one block each, each block
        one map task sending its batch to a live replica (`send`); the lean result parts in
        request order."""
        import ray
        from ray.data import TaskPoolStrategy

        pool = self.pools[pool_name]
        with self._jobs_lock:
            self.jobs += 1
            job = f"{method}-{self.jobs}"
        self._this_thread.batches = 0
        if requests.num_rows == 0:
            return requests.select(["request_id"])
        # One chunk first: putting a slice of a table of many chunks (a table per task,
        # concatenated) costs ~50 µs a row in Ray's serializer, against ~2 µs for one chunk.
        contiguous = requests.combine_chunks()
        batches = split_rows(contiguous, self._batch_sizes(pool, method, requests.num_rows))
        self._this_thread.batches = len(batches)
        with self._jobs_lock:
            self.job_counts[pool_name].update(jobs=1, batches=len(batches))
        # from_blocks: the driver knows each block's metadata, so no task per block reads it
        # (from_arrow's did, and the job waited for all of them); a block is a batch, and
        # batch_size=None hands each map task exactly one block.
        dataset = ray.data.from_blocks(batches).map_batches(
            call_replica,
            fn_kwargs={
                "pool_name": pool_name,
                "actors": pool.actors,
                "dispatcher": pool.dispatcher,
                "method": method,
                "send": send,
                "job": job,
            },
            batch_size=None,
            batch_format="pyarrow",
            # Tasks, not actors: Ray reuses idle worker processes for them, where a new actor
            # pool per job cost seconds of start-up per round.
            compute=TaskPoolStrategy(
                size=min(len(batches), IN_FLIGHT_PER_REPLICA * len(pool.actors))
            ),
            num_cpus=0,
        )
        try:
            parts = ray.get(dataset.to_arrow_refs())
        except Exception as error:
            clean = job_error(pool, pool_name, job, error)
            if clean is error:
                raise
            raise clean from error
        parts = in_batch_order(batches, parts)
        if not parts:
            raise RuntimeError(f"{requests.num_rows} requests, no results")
        return pa.concat_tables(parts, promote_options="default")

    def _batch_sizes(self, pool: ReplicaPool, method: Method, n_rows: int) -> list[int]:
        """A fixed `batch_rows` when the pool sets one; else work-sized batches, capped by the
        rows `max_batch_seconds` holds at the pool's measured engine seconds per row."""
        import ray

        batching = pool.batching
        if batching.batch_rows is not None:
            return fixed_batches(n_rows, batching.batch_rows)
        live, per_row = ray.get(pool.dispatcher.batching_inputs.remote(method))
        cap = int(batching.max_batch_seconds / per_row) if per_row else None
        return plan_batches(n_rows, max(1, live), min_rows=batching.min_batch_rows, max_rows=cap)


def split_texts(texts: list[str], parts: int, smallest: int = 256) -> list[list[str]]:
    """`texts` in up to `parts` consecutive pieces of at least `smallest` texts (a call per
    piece costs a round trip; a short list is one piece)."""
    size = max(smallest, math.ceil(len(texts) / max(1, parts)))
    return [texts[start : start + size] for start in range(0, len(texts), size)] or [texts]


def job_error(pool: ReplicaPool, pool_name: str, job: str, error: Exception) -> Exception:
    """The error a failed job raises: Ray Data wraps a task's error in pages of its own and
    drops the error itself, so the replica's error is rebuilt from what the dispatcher
    recorded (a ValueError stays one: the user's input), or the pool is down."""
    import ray

    health = pool.health()
    if health["live"] == 0:
        return PoolDownError(pool_down_message(pool_name, health))
    recorded = ray.get(pool.dispatcher.take_error.remote(job))
    if recorded is None:
        return error
    kind, message, where = recorded
    if kind in USER_ERROR_NAMES:
        return ValueError(message)
    if kind == ReplicaError.__name__:  # already says where
        return ReplicaError(message)
    return ReplicaError(f"{kind} in {where}: {message}")


def check_free_cpu(free_cpus: float) -> None:
    """Ray Data runs small 1-CPU tasks of its own (from_arrow reads block metadata in one);
    if the replica pools reserve every CPU of the cluster, the first job would wait forever."""
    if free_cpus < 1:
        raise ValueError(
            f"the replica pools leave {free_cpus:g} CPU free in the Ray cluster; Ray Data needs "
            "at least 1 for its own tasks: lower replicas.num_cpus or add a CPU to the cluster"
        )
