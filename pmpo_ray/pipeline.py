"""Ray Data fan-out of one request table over a pool of long-lived engine replicas.

Each call is one Ray Data job: the table becomes a dataset, batches go to N lightweight router
actors (no CPU reserved), and each router forwards its batches to the one engine replica it is
bound to. Engines never start here; they live in the pool for the whole job. Results are
sorted back into request order and checked: every request answered, exactly once, in order.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.engines.row_chunks import reassemble, split_rows


class ReplicaTickets:
    """Hands out replica indices round-robin, so N routers bind to N different replicas."""

    def __init__(self, count: int):
        self.count = count
        self.issued = 0

    def next(self) -> int:
        index = self.issued % self.count
        self.issued += 1
        return index


class ReplicaRouter:
    """A Ray Data map_batches worker bound to one engine replica."""

    def __init__(self, actors: list, tickets, method: str, call_args: tuple = ()):
        import ray

        self.actor = actors[ray.get(tickets.next.remote())]
        self.method = method
        self.call_args = call_args

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        return ray.get(getattr(self.actor, self.method).remote(batch, *self.call_args))


class RayDataEngines:
    """`score` and `generate` as Ray Data jobs over replica pools; counts the jobs it ran."""

    def __init__(self, scorer_pool, generator_pool=None, batch_rows: int = 64):
        import ray

        self.scorer_pool = scorer_pool
        self.generator_pool = generator_pool or scorer_pool
        self.batch_rows = batch_rows
        self.jobs = 0
        check_free_cpu(ray.available_resources().get("CPU", 0.0))
        self._tickets = {
            id(pool): ray.remote(ReplicaTickets).options(num_cpus=0).remote(len(pool.actors))
            for pool in (self.scorer_pool, self.generator_pool)
        }

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return self._job(self.scorer_pool, "score", requests, (with_token_logprobs,))

    def generate(self, requests: pa.Table) -> pa.Table:
        return self._job(self.generator_pool, "generate", requests, ())

    def _job(self, pool, method: str, requests: pa.Table, call_args: tuple) -> pa.Table:
        import ray
        from ray.data import ActorPoolStrategy

        self.jobs += 1
        # One block per batch, so every router has input from the start.
        blocks = split_rows(requests, self.batch_rows)
        dataset = ray.data.from_arrow(blocks).map_batches(
            ReplicaRouter,
            fn_constructor_kwargs={
                "actors": pool.actors,
                "tickets": self._tickets[id(pool)],
                "method": method,
                "call_args": call_args,
            },
            batch_size=self.batch_rows,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=len(pool.actors)),
            num_cpus=0,
        )
        parts = [part for part in ray.get(dataset.to_arrow_refs()) if part.num_rows]
        if not parts:
            return reassemble(requests, [])
        result = pa.concat_tables(parts, promote_options="default")
        return reassemble(requests, [in_request_order(result, requests)])


def check_free_cpu(free_cpus: float) -> None:
    """Ray Data runs small 1-CPU tasks of its own (from_arrow reads block metadata in one);
    if the replica pools reserved every CPU, the first job would wait forever."""
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
