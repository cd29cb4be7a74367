"""Engines in long-lived Ray actors, and a pool that spreads request tables over them.

An engine takes ~35 s to start on CPU (minutes on GPU), so each replica builds exactly one and
keeps it for the job's lifetime; everything that moves rows (this pool, Ray Data jobs) only
routes Arrow tables to warm actors. The pool implements the same Scorer/Generator protocol as a
bare engine, so callers cannot tell them apart except by throughput.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa

from pmpo_ray.config import EngineConfig, PromptFormat, ReplicaConfig
from pmpo_ray.engines.factory import build_engine
from pmpo_ray.engines.row_chunks import reassemble, split_rows

log = logging.getLogger(__name__)

# How many chunks may wait at one replica: one running plus one queued keeps it busy while the
# driver reacts, without piling work on a replica that turns out slow.
CHUNKS_IN_FLIGHT_PER_REPLICA = 2


class EngineReplica:
    """Holds one engine; wrapped with `ray.remote` by `start_replicas`."""

    def __init__(self, engine: EngineConfig, prompt_format: PromptFormat, cpu_threads: int):
        import torch

        torch.set_num_threads(cpu_threads)
        self.engine = build_engine(engine, prompt_format)
        self.stats = ReplicaStats()

    def ready(self) -> str:
        return self.engine.model_path

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        started = time.perf_counter()
        result = self.engine.score(requests, with_token_logprobs)
        self.stats.record(started, requests.num_rows, sum(result.column("n_tokens").to_pylist()))
        return result

    def generate(self, requests: pa.Table) -> pa.Table:
        started = time.perf_counter()
        result = self.engine.generate(requests)
        self.stats.record(started, requests.num_rows, sum(result.column("n_tokens").to_pylist()))
        return result

    def get_stats(self) -> dict:
        return self.stats.as_dict()

    def close(self) -> None:
        self.engine.close()


@dataclass
class ReplicaStats:
    """Work one replica did: what the busy fraction of a pool is computed from."""

    calls: int = 0
    rows: int = 0
    tokens: int = 0
    busy_seconds: float = 0.0

    def record(self, started: float, rows: int, tokens: int) -> None:
        self.calls += 1
        self.rows += rows
        self.tokens += tokens
        self.busy_seconds += time.perf_counter() - started

    def as_dict(self) -> dict:
        return {
            "calls": self.calls,
            "rows": self.rows,
            "tokens": self.tokens,
            "busy_seconds": self.busy_seconds,
        }


def replica_env(engine: EngineConfig, replicas: ReplicaConfig) -> dict[str, str]:
    """Environment of one replica process.

    vLLM-CPU binds its OpenMP threads to cores ("auto"); two replicas on one node would bind the
    same cores and halve each other, so CPU replicas use "nobind" and a fixed thread count.
    """
    threads = str(cpu_threads(replicas))
    kv_cache = str(max(1, round(engine.kv_cache_gib)))
    env = {"OMP_NUM_THREADS": threads, "VLLM_CPU_KVCACHE_SPACE": kv_cache}
    if replicas.num_gpus == 0:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    return env


def cpu_threads(replicas: ReplicaConfig) -> int:
    if replicas.cpu_threads is not None:
        return replicas.cpu_threads
    return max(1, int(-(-replicas.num_cpus // 1)))


def actor_options(engine: EngineConfig, replicas: ReplicaConfig) -> dict:
    """Ray resources of one replica.

    With tensor parallelism the actor itself holds no GPU: it reserves a placement group of
    `tensor_parallel_size` GPU bundles on one node, and vLLM's Ray executor starts its workers
    (one GPU, no CPU each) inside it. The actor's own CPUs go into the first bundle, so a replica
    asking for more CPUs than one GPU's share still fits its group.
    """
    options = {
        "num_cpus": replicas.num_cpus,
        "num_gpus": replicas.num_gpus if engine.tensor_parallel_size == 1 else 0,
        "runtime_env": {"env_vars": replica_env(engine, replicas)},
        "max_concurrency": 1,
    }
    if engine.tensor_parallel_size > 1:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundles = [{"GPU": 1} for _ in range(engine.tensor_parallel_size)]
        if replicas.num_cpus > 0:
            bundles[0]["CPU"] = replicas.num_cpus
        group = placement_group(bundles, strategy="STRICT_PACK")
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=group,
            placement_group_bundle_index=0,
            placement_group_capture_child_tasks=True,
        )
    return options


class ReplicaPool:
    """N engine actors behind the Scorer/Generator protocol."""

    def __init__(
        self,
        actors: list,
        max_rows_per_call: int,
        placement_groups: list = (),
        reserved_cpus: float = 0.0,
    ):
        if not actors:
            raise ValueError("a replica pool needs at least one actor")
        self.actors = actors
        self.max_rows_per_call = max_rows_per_call
        self.reserved_cpus = reserved_cpus  # what the replicas hold of the cluster's CPUs
        # Killing an actor does not free its placement group: the pool removes them itself.
        self.placement_groups = list(placement_groups)

    @classmethod
    def start(
        cls,
        engine: EngineConfig,
        replicas: ReplicaConfig,
        prompt_format: PromptFormat | None = None,
        replica_class: type = EngineReplica,
    ) -> "ReplicaPool":
        """Start the actors and wait until every engine is loaded (fails fast if one cannot)."""
        import ray

        remote_class = ray.remote(replica_class)
        actors, groups = [], []
        for _ in range(replicas.num_replicas):
            options = actor_options(engine, replicas)
            if "scheduling_strategy" in options:
                groups.append(options["scheduling_strategy"].placement_group)
            actors.append(
                remote_class.options(**options).remote(
                    engine, prompt_format or PromptFormat(), cpu_threads(replicas)
                )
            )
        paths = ray.get([actor.ready.remote() for actor in actors])
        log.info("%d replica(s) ready with model %s", len(actors), paths[0])
        reserved = replicas.num_cpus * replicas.num_replicas
        return cls(actors, replicas.max_rows_per_call, groups, reserved)

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return self._fan_out("score", requests, with_token_logprobs)

    def generate(self, requests: pa.Table) -> pa.Table:
        return self._fan_out("generate", requests)

    def stats(self) -> list[dict]:
        import ray

        return ray.get([actor.get_stats.remote() for actor in self.actors])

    def shutdown(self) -> None:
        """Stop each engine cleanly (its engine-core process too), then the actors."""
        import ray
        from ray.util.placement_group import remove_placement_group

        ray.wait(
            [actor.close.remote() for actor in self.actors],
            num_returns=len(self.actors),
            timeout=30,
        )
        for actor in self.actors:
            ray.kill(actor)
        for group in self.placement_groups:
            remove_placement_group(group)
        self.actors = []
        self.placement_groups = []

    def _fan_out(self, method: str, requests: pa.Table, *args) -> pa.Table:
        """Keep every replica fed with chunks; the least-loaded one gets the next chunk."""
        import ray

        chunks = split_rows(requests, self.max_rows_per_call)
        results: dict[int, pa.Table] = {}
        pending: dict = {}  # object ref -> (chunk index, actor index)
        load = [0] * len(self.actors)
        next_chunk = 0
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and min(load) < CHUNKS_IN_FLIGHT_PER_REPLICA:
                actor_index = load.index(min(load))
                call = getattr(self.actors[actor_index], method)
                ref = call.remote(chunks[next_chunk], *args)
                pending[ref] = (next_chunk, actor_index)
                load[actor_index] += 1
                next_chunk += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            chunk_index, actor_index = pending.pop(done[0])
            load[actor_index] -= 1
            results[chunk_index] = ray.get(done[0])
        return reassemble(requests, [results[i] for i in range(len(chunks))])
