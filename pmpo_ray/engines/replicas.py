"""Engines in long-lived Ray actors: one replica actor per engine, and the pool that starts,
counts and stops them.

An engine takes ~35 s to start on CPU (minutes on GPU), so each replica builds exactly one and
keeps it for the job's lifetime; what moves rows to them (engines/ray_data_client.py) only
routes Arrow tables to warm actors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.config import EngineSettings, PromptFormat, ReplicaConfig
from pmpo_ray.engines.dispatcher import ReplicaDispatcher, ReplicaWork
from pmpo_ray.engines.engine import Engine
from pmpo_ray.engines.generation import PreparedGeneration
from pmpo_ray.engines.registry import build_engine
from pmpo_ray.engines.replica_memory import replica_memory_reservation
from pmpo_ray.engines.scoring import PreparedScoring
from pmpo_ray.requests import SCORE_RESULT_FIELDS, TOKEN_LOGPROBS_FIELD

log = logging.getLogger(__name__)


# What a replica's engine call answers: its result and the work it cost (None: no engine work).
Answer = tuple[object, dict | None]


class EngineReplica:
    """Holds one engine (engines/engine.py); wrapped with `ray.remote` by `ReplicaPool.start`.

    Its calls are typed actor methods (`replica.score.remote(...)`), each answering its result
    and the work it cost. Ray restarts a replica whose process dies
    (`ReplicaConfig.max_restarts`): `__init__` runs again and loads a fresh engine. A replica
    whose engine died under it (vLLM's engine-core process killed) ends its own process, so
    that Ray restarts it the same way.
    """

    def __init__(self, engine: EngineSettings, prompt_format: PromptFormat, cpu_threads: int):
        if engine.loads_model:  # a model-less engine runs no torch to size
            import torch

            torch.set_num_threads(cpu_threads)
        self.engine: Engine = build_engine(engine, prompt_format)
        # Two batches may be here at once (see actor_options): one prepares (renders and
        # tokenizes, CPU only) while the other runs on the engine, which takes one at a time.
        self.engine_lock = threading.Lock()
        self.prepare_lock = threading.Lock()  # one tokenizing batch at a time
        self.closing = threading.Event()  # a deliberate close is not a crash
        watch_engine_processes(self.closing)

    def ready(self) -> str:
        return self.engine.model_path

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> Answer:
        """The engine's `score` of one batch: lean result columns and the work it cost."""
        return self._batch(lambda: self.engine.prepare_score(requests, with_token_logprobs))

    def generate(self, requests: pa.Table) -> Answer:
        """The engine's `generate` of one batch, and the work it cost."""
        return self._batch(lambda: self.engine.prepare_generate(requests))

    def count_tokens(self, texts: Sequence[str]) -> Answer:
        """Token counts, and no work: a tokenizer call (run beside the engine's batch, see
        TOKENS_GROUP) is not engine time."""
        return self.engine.count_tokens(texts), None

    def _batch(self, prepare: Callable[[], PreparedScoring | PreparedGeneration]) -> Answer:
        """Prepare a batch (CPU: rendering, tokenizing; beside another batch's engine work),
        run it on the engine, and return its result with the work it cost (summed by the
        pool's dispatcher, which outlives this process). A table comes back lean: request ids
        and result columns, never the request strings the driver holds."""
        cpu_started = time.thread_time()
        with self.prepare_lock:
            prepared = prepare()
        prep_cpu = time.thread_time() - cpu_started
        with self.engine_lock:
            started = time.perf_counter()
            try:
                result = self.engine.run(prepared)
            except Exception as error:
                self._exit_if_engine_died(error)
                raise
            busy = time.perf_counter() - started
        cpu_started = time.thread_time()
        lean = lean_result(result)
        work = ReplicaWork(
            calls=1,
            rows=result.num_rows,
            tokens=pc.sum(result.column("n_tokens")).as_py() or 0,
            busy_seconds=busy,
            prep_cpu_seconds=prep_cpu + time.thread_time() - cpu_started,
        )
        return lean, work.as_dict()

    def close(self) -> None:
        self.closing.set()
        self.engine.close()

    def _exit_if_engine_died(self, error: Exception) -> None:
        if self.engine.engine_died(error):
            log.error("engine died (%s): ending this replica so that Ray restarts it", error)
            os._exit(1)


def lean_result(result: pa.Table) -> pa.Table:
    """A scoring result without the request columns the driver already holds (it joins the
    result columns to its own table); a generation result is lean already."""
    if "prompt" not in result.column_names:
        return result
    wanted = ["request_id", *(f.name for f in SCORE_RESULT_FIELDS), TOKEN_LOGPROBS_FIELD.name]
    return result.select([name for name in wanted if name in result.column_names])


def watch_engine_processes(closing: threading.Event, interval_s: float = 2.0) -> None:
    """End this replica when a process its engine started dies (vLLM runs its engine core and
    workers in child processes): calls into such an engine can wait forever, and Ray restarts a
    replica whose process ended. Engines without child processes are not watched."""
    import contextlib

    import psutil

    children = psutil.Process().children(recursive=True)
    if not children:
        return

    def gone(child) -> bool:
        try:
            return child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def watch() -> None:
        while not closing.wait(interval_s):
            dead = [child.pid for child in children if gone(child)]
            if dead:
                log.error("engine process(es) %s died: ending this replica to be restarted", dead)
                for child in children:  # the rest must not outlive it holding memory
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
                os._exit(1)

    threading.Thread(target=watch, name="engine-process-watch", daemon=True).start()


def replica_env(engine: EngineSettings, replicas: ReplicaConfig) -> dict[str, str]:
    """Environment of one replica process: a fixed thread count (replicas sharing a node must
    not each take every core) plus what the backend reads at start."""
    on_gpu = replicas.num_gpus > 0 or engine.gpus_per_engine() > 1
    return {"OMP_NUM_THREADS": str(cpu_threads(replicas)), **engine.process_env(on_gpu)}


def cpu_threads(replicas: ReplicaConfig) -> int:
    if replicas.cpu_threads is not None:
        return replicas.cpu_threads
    return max(1, int(-(-replicas.num_cpus // 1)))


# A replica's concurrency group for `count_tokens` (callers pick it: replica_calls.py): the
# driver's length check of each task's rewrites must not queue behind an engine batch of
# seconds, so it runs on a thread of its own (the tokenizer is only read, never reconfigured,
# so sharing it with the engine call is safe).
TOKENS_GROUP = "tokens"


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
        # Two batches at once: one prepares while the other holds the engine (EngineReplica's
        # engine_lock keeps engine calls one at a time; count_tokens: see TOKENS_GROUP).
        "max_concurrency": 2,
        # A dead replica is restarted (its engine reloaded); its lost batch is not retried on
        # it but sent to a live replica by the Ray Data client (replica_calls.call_replica).
        "max_restarts": replicas.max_restarts,
        "max_task_retries": 0,
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
    """N engine actors of one role (scorer or rewriter), started together and stopped
    together, with the dispatcher that lends them to batches and watches them restart."""

    def __init__(
        self,
        actors: list,
        *,
        batching: ReplicaConfig | None = None,
        placement_groups: Sequence = (),
        reserved_cpus: float = 0.0,
        restart_timeout_s: float = 600.0,
        node_ids: Sequence[str] | None = None,
    ):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not actors:
            raise ValueError("a replica pool needs at least one actor")
        self.actors = actors
        # How jobs are cut into batches: batch_rows, min_batch_rows, max_batch_seconds
        self.batching = batching or ReplicaConfig()
        self.reserved_cpus = reserved_cpus  # what the replicas hold of the cluster's CPUs
        # Killing an actor does not free its placement group: the pool removes them itself.
        self.placement_groups = list(placement_groups)
        # On the driver's node: a dispatcher on a worker node would go down with that node
        # and take the whole pool's bookkeeping with it.
        driver_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), False)
        self.dispatcher = (
            ray.remote(ReplicaDispatcher)
            .options(num_cpus=0, scheduling_strategy=driver_node)
            .remote(actors, restart_timeout_s, node_ids=node_ids and list(node_ids))
        )

    @classmethod
    def start(
        cls,
        engine: EngineSettings,
        replicas: ReplicaConfig,
        prompt_format: PromptFormat | None = None,
        replica_class: type = EngineReplica,
        reserve_memory: bool = False,
    ) -> "ReplicaPool":
        """Start the actors and wait until every engine is loaded (fails fast if one cannot).
        `reserve_memory`: each replica reserves its memory estimate in Ray, for pools that
        `pool_plan.check_pools_fit` has placed (a reservation no node can grant would leave a
        replica waiting forever)."""
        import ray

        remote_class = ray.remote(concurrency_groups={TOKENS_GROUP: 1})(replica_class)
        actors, groups = [], []
        for _ in range(replicas.num_replicas):
            options = actor_options(engine, replicas)
            if reserve_memory:  # see replica_memory.replica_memory_reservation
                options["memory"] = replica_memory_reservation(engine, replicas)
            if "scheduling_strategy" in options:
                groups.append(options["scheduling_strategy"].placement_group)
            actors.append(
                remote_class.options(**options).remote(
                    engine, prompt_format or PromptFormat(), cpu_threads(replicas)
                )
            )
        paths = ray.get([actor.ready.remote() for actor in actors])
        log.info("%d replica(s) ready with model %s", len(actors), paths[0])
        node_ids = ray.get([actor.node_id.remote() for actor in actors])
        return cls(
            actors,
            batching=replicas,
            placement_groups=groups,
            reserved_cpus=replicas.num_cpus * replicas.num_replicas,
            restart_timeout_s=replicas.restart_timeout_s,
            node_ids=node_ids,
        )

    def stats(self) -> list[dict]:
        """Per replica: the calls, rows, tokens and busy seconds of every call that returned,
        across restarts."""
        import ray

        return ray.get(self.dispatcher.work_done.remote())

    def stats_by_method(self) -> dict[str, dict]:
        """The pool's calls, rows, tokens, busy and preparation seconds per method."""
        import ray

        return ray.get(self.dispatcher.work_by_method_done.remote())

    def health(self) -> dict:
        """`replicas`, `live` (taking work now), and why the others are `restarting` or
        `gone` (replica index -> reason)."""
        import ray

        return ray.get(self.dispatcher.health.remote())

    def shutdown(self) -> None:
        """Stop each engine cleanly (its engine-core process too), then the actors."""
        import ray
        from ray.util.placement_group import remove_placement_group

        ray.wait(
            [actor.close.remote() for actor in self.actors],
            num_returns=len(self.actors),
            timeout=30,
        )
        ray.kill(self.dispatcher)
        for actor in self.actors:
            ray.kill(actor)
        for group in self.placement_groups:
            remove_placement_group(group)
        self.actors = []
        self.placement_groups = []
