"""The engine client over Ray: each call is a Ray Data job over a pool of long-lived replicas.

Each `score` or `generate` call is one Ray Data job: the table becomes a dataset whose batches
go to lightweight map tasks (no CPU reserved); each task borrows the least busy engine replica from a small
dispatcher actor and runs its batch there. Engines never start here; they live in the pool for
the whole job. Results are sorted back into request order and checked: every request
answered, exactly once, in order.
"""

from __future__ import annotations

import math
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.row_chunks import reassemble, split_rows


class ReplicaDispatcher:
    """Lends replica indices, least busy first, so concurrent batches spread over replicas and
    a replica stuck with long rows gets no more until the others catch up."""

    def __init__(self, count: int):
        self.in_flight = [0] * count
        self.served = [0] * count

    def acquire(self) -> int:
        index = min(range(len(self.in_flight)), key=lambda i: (self.in_flight[i], self.served[i]))
        self.in_flight[index] += 1
        self.served[index] += 1
        return index

    def release(self, index: int) -> None:
        self.in_flight[index] -= 1

    def served_counts(self) -> list[int]:
        return list(self.served)


def call_replica(
    batch: pa.Table, *, actors: list, dispatcher, method: str, call_args: tuple
) -> pa.Table:
    """A Ray Data map_batches task: borrow the least busy replica, run the batch there."""
    import ray

    index = ray.get(dispatcher.acquire.remote())
    try:
        return ray.get(getattr(actors[index], method).remote(batch, *call_args))
    finally:
        dispatcher.release.remote(index)


class RayDataClient:
    """`score` and `generate` as Ray Data jobs over replica pools; counts the jobs it ran.

    Scoring goes to the scorer pool, generation to the rewriter pool (the scorer pool when
    there is none). The client owns its pools: `close` stops them.
    """

    def __init__(self, scorer: ReplicaPool, rewriter: ReplicaPool | None = None):
        import ray

        self.pools = {"scorer": scorer}
        if rewriter is not None and rewriter is not scorer:
            self.pools["rewriter"] = rewriter
        self.jobs = 0
        # From the pools' own reservations, not available_resources(): a pool shut down a
        # moment ago frees its CPUs asynchronously, and the question is about configuration.
        reserved = sum(pool.reserved_cpus for pool in self.pools.values())
        check_free_cpu(ray.cluster_resources().get("CPU", 0.0) - reserved)
        dispatcher = ray.remote(ReplicaDispatcher).options(num_cpus=0)
        self.dispatchers = {
            name: dispatcher.remote(len(pool.actors)) for name, pool in self.pools.items()
        }

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return self._job("scorer", "score", requests, (with_token_logprobs,))

    def generate(self, requests: pa.Table) -> pa.Table:
        return self._job(self._generator_pool(), "generate", requests, ())

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Counted by a scorer replica: prompts are measured in the scorer model's tokens."""
        import ray

        return ray.get(self.pools["scorer"].actors[0].count_tokens.remote(list(texts)))

    def stats(self) -> dict[str, dict]:
        """Per pool: replicas, and the calls, rows, tokens and busy seconds they summed."""
        totals = {}
        for name, pool in self.pools.items():
            per_replica = pool.stats()
            totals[name] = {"replicas": len(pool.actors)}
            for key in ("calls", "rows", "tokens", "busy_seconds"):
                totals[name][key] = sum(stats[key] for stats in per_replica)
        return totals

    def close(self) -> None:
        import ray

        for dispatcher in self.dispatchers.values():
            ray.kill(dispatcher)
        for pool in self.pools.values():
            pool.shutdown()

    def _generator_pool(self) -> str:
        return "rewriter" if "rewriter" in self.pools else "scorer"

    def _job(self, pool_name: str, method: str, requests: pa.Table, call_args: tuple) -> pa.Table:
        import ray
        from ray.data import TaskPoolStrategy

        pool = self.pools[pool_name]
        self.jobs += 1
        # One block per batch, so every map task has input from the start.
        rows = batch_rows_for(requests.num_rows, len(pool.actors), pool.batch_rows)
        blocks = split_rows(requests, rows)
        # Tasks, not actors: Ray reuses idle worker processes for them, where a new actor pool
        # per job cost seconds of start-up per round. Two batches in flight per replica keep
        # each engine fed back to back.
        dataset = ray.data.from_arrow(blocks).map_batches(
            call_replica,
            fn_kwargs={
                "actors": pool.actors,
                "dispatcher": self.dispatchers[pool_name],
                "method": method,
                "call_args": call_args,
            },
            batch_size=rows,
            batch_format="pyarrow",
            compute=TaskPoolStrategy(size=2 * len(pool.actors)),
            num_cpus=0,
        )
        parts = [part for part in ray.get(dataset.to_arrow_refs()) if part.num_rows]
        if not parts:
            return reassemble(requests, [])
        result = pa.concat_tables(parts, promote_options="default")
        return reassemble(requests, [in_request_order(result, requests)])


def batch_rows_for(n_rows: int, n_replicas: int, most: int) -> int:
    """Rows per batch: at most `most`, and small enough that a small table still gives every
    replica two batches (a 96-row round in batches of 64 would leave one of two replicas idle)."""
    return max(1, min(most, math.ceil(n_rows / (2 * n_replicas))))


def check_free_cpu(free_cpus: float) -> None:
    """Ray Data runs small 1-CPU tasks of its own (from_arrow reads block metadata in one);
    if the replica pools reserve every CPU of the cluster, the first job would wait forever."""
    if free_cpus < 1:
        raise ValueError(
            f"the replica pools leave {free_cpus:g} CPU free in the Ray cluster; Ray Data needs "
            "at least 1 for its own tasks: lower replicas.num_cpus or add a CPU to the cluster"
        )


def in_request_order(result: pa.Table, requests: pa.Table) -> pa.Table:
    """Ray Data may finish batches in any order: sort rows back to the requests' order
    (and by sample index within a request)."""
    position = pc.index_in(result.column("request_id"), value_set=requests.column("request_id"))
    keyed = result.append_column("_position", position)
    order = [("_position", "ascending")]
    if "sample_index" in result.column_names:
        order.append(("sample_index", "ascending"))
    return result.take(pc.sort_indices(keyed, sort_keys=order))
