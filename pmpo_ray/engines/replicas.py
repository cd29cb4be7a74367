"""Engines in long-lived Ray actors: one replica actor per engine, and the pool that starts,
counts and stops them.

An engine takes ~35 s to start on CPU (minutes on GPU), so each replica builds exactly one and
keeps it for the job's lifetime; what moves rows to them (engines/ray_data_client.py) only
routes Arrow tables to warm actors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from pmpo_ray.config import EngineSettings, PromptFormat, ReplicaConfig
from pmpo_ray.engines.registry import build_engine

log = logging.getLogger(__name__)


class EngineReplica:
    """Holds one engine; wrapped with `ray.remote` by `ReplicaPool.start`."""

    def __init__(self, engine: EngineSettings, prompt_format: PromptFormat, cpu_threads: int):
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

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.engine.count_tokens(texts)

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


def replica_env(engine: EngineSettings, replicas: ReplicaConfig) -> dict[str, str]:
    """Environment of one replica process: a fixed thread count (replicas sharing a node must
    not each take every core) plus what the backend reads at start."""
    on_gpu = replicas.num_gpus > 0 or engine.gpus_per_engine() > 1
    return {"OMP_NUM_THREADS": str(cpu_threads(replicas)), **engine.process_env(on_gpu)}


def cpu_threads(replicas: ReplicaConfig) -> int:
    if replicas.cpu_threads is not None:
        return replicas.cpu_threads
    return max(1, int(-(-replicas.num_cpus // 1)))


def actor_options(engine: EngineSettings, replicas: ReplicaConfig) -> dict:
    """Ray resources of one replica.

    With tensor parallelism the actor itself holds no GPU: it reserves a placement group of
    `gpus_per_engine()` GPU bundles on one node, and vLLM's Ray executor starts its workers
    (one GPU, no CPU each) inside it. The actor's own CPUs go into the first bundle, so a replica
    asking for more CPUs than one GPU's share still fits its group.
    """
    gpus = engine.gpus_per_engine()
    options = {
        "num_cpus": replicas.num_cpus,
        "num_gpus": replicas.num_gpus if gpus == 1 else 0,
        "runtime_env": {"env_vars": replica_env(engine, replicas)},
        "max_concurrency": 1,
    }
    if gpus > 1:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundles = [{"GPU": 1} for _ in range(gpus)]
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
    """N engine actors of one role (scorer or rewriter), started together and stopped together."""

    def __init__(
        self,
        actors: list,
        *,
        batch_rows: int = 64,
        placement_groups: Sequence = (),
        reserved_cpus: float = 0.0,
    ):
        if not actors:
            raise ValueError("a replica pool needs at least one actor")
        self.actors = actors
        self.batch_rows = batch_rows  # most rows one call to a replica carries
        self.reserved_cpus = reserved_cpus  # what the replicas hold of the cluster's CPUs
        # Killing an actor does not free its placement group: the pool removes them itself.
        self.placement_groups = list(placement_groups)

    @classmethod
    def start(
        cls,
        engine: EngineSettings,
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
        return cls(
            actors,
            batch_rows=replicas.batch_rows,
            placement_groups=groups,
            reserved_cpus=replicas.num_cpus * replicas.num_replicas,
        )

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
