"""One call on one live replica of a pool: typed actor calls, and failover when a replica dies.

What a Ray Data map task of a job (ray_data_client.py) runs for its batch, and what token
counting runs for its part of a list: borrow the least busy live replica from the pool's
dispatcher (engines/dispatcher.py), call it, give it back with the work the call cost, and send
the call again elsewhere if the replica's process died under it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pyarrow as pa

from pmpo_ray.engines.dispatcher import REASON_CHARS, Method
from pmpo_ray.engines.replicas import TOKENS_GROUP
from pmpo_ray.errors import PoolDownError, ReplicaError, first_line, root_cause

# A typed call on a replica actor (replicas.EngineReplica): (replica, payload) -> the ref of
# its answer, (result, work). A misspelt method fails here, at the call, not in the replica.
Send = Callable[[Any, Any], Any]


def send_score(replica, batch: pa.Table, with_token_logprobs: bool):
    return replica.score.remote(batch, with_token_logprobs)


def send_generate(replica, batch: pa.Table):
    return replica.generate.remote(batch)


def send_count_tokens(replica, texts: Sequence[str]):
    # a tokenizer call: not queued behind the engine's batch (replicas.TOKENS_GROUP)
    return replica.count_tokens.options(concurrency_group=TOKENS_GROUP).remote(texts)


def call_with_failover(
    pool_name: str,
    actors: list,
    dispatcher,
    method: Method,
    send: Send,
    payload,
    *,
    job: str = "",
    max_deaths: int = 3,
):
    """`send(replica, payload)` to the least busy live replica, and its result; the
    dispatcher sums the work it cost under `method`. If that replica's process dies (or its
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
            result, work = wait_for_call(send(actors[index], payload), node_id)
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
                dispatcher.release.remote(index, work, method)
    message = (
        f"{method} of {describe_payload(payload)} in the {pool_name} pool: {max_deaths} "
        "replicas died running it (too big for a replica's memory?)"
    )
    where = f"the {pool_name} pool"
    ray.get(dispatcher.record_error.remote(job, "ReplicaError", message, where))
    raise ReplicaError(message)


def describe_payload(table) -> str:
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
    method: Method,
    send: Send,
    job: str,
) -> pa.Table:
    """A Ray Data map_batches task: one batch on one live replica of the pool."""
    return call_with_failover(pool_name, actors, dispatcher, method, send, batch, job=job)


def pool_down_message(pool_name: str, health: dict) -> str:
    reasons = {**health["restarting"], **health["gone"]}
    why = "; ".join(f"replica {index}: {reason}" for index, reason in sorted(reasons.items()))
    return f"the {pool_name} pool has no live replica left of {health['replicas']} ({why})"
