"""The engine client over Ray: each call is a Ray Data job over a pool of long-lived replicas.

Each `score` or `generate` call is one Ray Data job: the table becomes a dataset whose batches
go to lightweight map tasks (no CPU reserved); each task borrows the least busy live replica
from the pool's dispatcher (engines/dispatcher.py) and runs its batch there; if that replica's
process dies, the batch runs again on another. Engines never start here; they live in the pool
for the whole job. Results are sorted back into request order and checked: every request
answered, exactly once, in order.
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.engines.dispatcher import REASON_CHARS
from pmpo_ray.engines.replicas import TOKENS_GROUP, ReplicaPool
from pmpo_ray.engines.row_chunks import reassemble, split_rows
from pmpo_ray.errors import USER_ERROR_NAMES, PoolDownError, ReplicaError, first_line, root_cause


def call_with_failover(
    pool_name: str,
    actors: list,
    dispatcher,
    method: str,
    *args,
    job: str = "",
    max_deaths: int = 3,
):
    """Run `method` on the least busy live replica; if that replica's process dies (or its
    node leaves the cluster) during the call, run it again on another live one (or the
    restarted one), up to `max_deaths` times: a request that kills every replica it meets
    (say, one too big for memory) must not use up the whole pool. A replica that raised an
    ordinary error is not retried: the error is the answer, recorded for `job`."""
    import ray
    from ray.exceptions import RayActorError

    for _ in range(max_deaths):
        lent = ray.get(dispatcher.acquire.remote())
        if lent is None:
            raise PoolDownError(pool_down_message(pool_name, ray.get(dispatcher.health.remote())))
        index, node_id = lent
        work = None
        try:
            call = actors[index].call
            if method == "count_tokens":  # a tokenizer call: not behind the engine's batch
                call = call.options(concurrency_group=TOKENS_GROUP)
            result, work = wait_for_call(call.remote(method, *args), node_id)
            return result
        except (RayActorError, NodeLostError) as error:
            ray.get(dispatcher.report_failure.remote(index, first_line(error, REASON_CHARS)))
            index = None  # report_failure took it back
        except Exception as error:
            cause = root_cause(error)
            where = f"{pool_name} replica {index}"
            # waited for: the driver asks for it as soon as the job has failed
            ray.get(dispatcher.record_error.remote(job, type(cause).__name__, str(cause), where))
            raise
        finally:
            if index is not None:
                dispatcher.release.remote(index, work)
    message = (
        f"{method} of {describe_args(args)} in the {pool_name} pool: {max_deaths} replicas died "
        "running it (too big for a replica's memory?)"
    )
    where = f"the {pool_name} pool"
    ray.get(dispatcher.record_error.remote(job, "ReplicaError", message, where))
    raise ReplicaError(message)


def describe_args(args: tuple) -> str:
    table = args[0] if args else None
    if isinstance(table, pa.Table) and "request_id" in table.column_names and table.num_rows:
        ids = table.column("request_id")
        return f"requests {ids[0].as_py()}..{ids[-1].as_py()} ({table.num_rows} rows)"
    return "one call"


class NodeLostError(RuntimeError):
    """The node of the replica a call waits on left the cluster."""


def wait_for_call(ref, node_id: str | None, check_every_s: float = 5.0):
    """The call's result; a call to a replica whose node is gone can wait forever for a
    restart with nowhere to go, so the node is checked every few seconds."""
    import ray

    while True:
        done, _ = ray.wait([ref], timeout=check_every_s)
        if done:
            return ray.get(ref)
        if node_id is not None and not node_alive(node_id):
            raise NodeLostError(f"its node {node_id[:8]} left the cluster")


def node_alive(node_id: str) -> bool:
    import ray

    return any(node["NodeID"] == node_id and node["Alive"] for node in ray.nodes())


def call_replica(
    batch: pa.Table,
    *,
    pool_name: str,
    actors: list,
    dispatcher,
    method: str,
    call_args: tuple,
    job: str,
) -> pa.Table:
    """A Ray Data map_batches task: one batch on one live replica of the pool."""
    return call_with_failover(pool_name, actors, dispatcher, method, batch, *call_args, job=job)


def pool_down_message(pool_name: str, health: dict) -> str:
    reasons = {**health["restarting"], **health["gone"]}
    why = "; ".join(f"replica {index}: {reason}" for index, reason in sorted(reasons.items()))
    return f"the {pool_name} pool has no live replica left of {health['replicas']} ({why})"


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
        self._jobs_lock = threading.Lock()
        # A generation job and a scoring job may run at once (pmpo/rounds.py overlaps them):
        # each is its own Ray Data execution, and replica errors are recorded per job.
        self.concurrent_jobs = True
        # From the pools' own reservations, not available_resources(): a pool shut down a
        # moment ago frees its CPUs asynchronously, and the question is about configuration.
        reserved = sum(pool.reserved_cpus for pool in self.pools.values())
        check_free_cpu(ray.cluster_resources().get("CPU", 0.0) - reserved)

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return self._job("scorer", "score", requests, (with_token_logprobs,))

    def generate(self, requests: pa.Table) -> pa.Table:
        return self._job(self._generator_pool(), "generate", requests, ())

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Counted by a scorer replica: prompts are measured in the scorer model's tokens."""
        pool = self.pools["scorer"]
        return call_with_failover("scorer", pool.actors, pool.dispatcher, "count_tokens", texts)

    def stats(self) -> dict[str, dict]:
        """Per pool: replicas, live replicas, and the calls, rows, tokens and busy seconds
        they summed."""
        totals = {}
        for name, pool in self.pools.items():
            per_replica = pool.stats()
            totals[name] = {"replicas": len(pool.actors), "live": pool.health()["live"]}
            for key in ("calls", "rows", "tokens", "busy_seconds"):
                totals[name][key] = sum(stats[key] for stats in per_replica)
        return totals

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()

    def _generator_pool(self) -> str:
        return "rewriter" if "rewriter" in self.pools else "scorer"

    def _job(self, pool_name: str, method: str, requests: pa.Table, call_args: tuple) -> pa.Table:
        import ray
        from ray.data import TaskPoolStrategy

        pool = self.pools[pool_name]
        with self._jobs_lock:
            self.jobs += 1
            job = f"{method}-{self.jobs}"
        # One block per batch, so every map task has input from the start.
        rows = batch_rows_for(requests.num_rows, len(pool.actors), pool.batch_rows)
        blocks = split_rows(requests, rows)
        # Tasks, not actors: Ray reuses idle worker processes for them, where a new actor pool
        # per job cost seconds of start-up per round. Two batches in flight per replica keep
        # each engine fed back to back.
        dataset = ray.data.from_arrow(blocks).map_batches(
            call_replica,
            fn_kwargs={
                "pool_name": pool_name,
                "actors": pool.actors,
                "dispatcher": pool.dispatcher,
                "method": method,
                "call_args": call_args,
                "job": job,
            },
            batch_size=rows,
            batch_format="pyarrow",
            compute=TaskPoolStrategy(size=2 * len(pool.actors)),
            num_cpus=0,
        )
        try:
            parts = [part for part in ray.get(dataset.to_arrow_refs()) if part.num_rows]
        except Exception as error:
            clean = job_error(pool, pool_name, job, error)
            if clean is error:
                raise
            raise clean from error
        if not parts:
            return reassemble(requests, [])
        result = pa.concat_tables(parts, promote_options="default")
        return reassemble(requests, [in_request_order(result, requests)])


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
