"""Will the pools fit? Checked against the cluster before any replica starts.

Ray would otherwise wait forever for a replica asking for more CPUs or GPUs than any node has,
and its memory monitor kills replicas (and the work of a whole round) when more start on a node
than its memory holds. So each replica's needs — CPUs, GPUs on one node, and host memory — are
placed on the cluster's nodes first (largest first), and a pool that cannot be placed is
refused with what it needs, what the cluster has, and what to change.

Each replica's host memory comes from its estimate (engines/replica_memory.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pmpo_ray.engines.ray_data_client import check_free_cpu
from pmpo_ray.engines.replica_memory import GIB, model_folder, replica_memory_parts

# How long a check waits for memory that other replicas hold to be freed (a pool closed by this
# process a moment ago releases its reservation asynchronously).
RELEASE_GRACE_S = 10.0


@dataclass(frozen=True)
class ReplicaNeed:
    """What one replica of a pool takes from the node it lands on."""

    pool: str
    cpus: float
    gpus: float  # all on one node (a tensor-parallel group is one placement group)
    memory_bytes: int
    memory_parts: tuple[tuple[str, int], ...] = ()  # (part, bytes) summing to memory_bytes
    memory_knobs: tuple[str, ...] = ()  # dotted config fields that lower memory_bytes


@dataclass(frozen=True)
class NodeCapacity:
    name: str
    cpus: float
    gpus: float
    memory_bytes: float


def placement_problems(needs: list[ReplicaNeed], nodes: list[NodeCapacity]) -> list[str]:
    """Place every replica on a node (largest first); one line per pool that does not fit."""
    if not nodes:
        return ["the Ray cluster has no live node"]
    free = {node.name: [node.cpus, node.gpus, node.memory_bytes] for node in nodes}
    placed: dict[str, Counter] = {node.name: Counter() for node in nodes}
    problems: dict[str, str] = {}
    for need in sorted(needs, key=lambda n: (n.gpus, n.memory_bytes, n.cpus), reverse=True):
        fits = [name for name, left in free.items() if fits_on(need, left)]
        if not fits:
            problems.setdefault(need.pool, why_not(need, nodes, free, placed))
            continue
        name = max(fits, key=lambda name: free[name][2])  # most free memory: spread
        free[name][0] -= need.cpus
        free[name][1] -= need.gpus
        free[name][2] -= need.memory_bytes
        placed[name][need.pool] += 1
    return list(problems.values())


def fits_on(need: ReplicaNeed, left: list[float]) -> bool:
    cpus, gpus, memory = left
    return need.cpus <= cpus + 1e-9 and need.gpus <= gpus + 1e-9 and need.memory_bytes <= memory


def why_not(need: ReplicaNeed, nodes: list[NodeCapacity], free: dict, placed: dict) -> str:
    """What the pool's replica needs, what the cluster has, and what to change."""
    memory = f"~{need.memory_bytes / GIB:.1f} GiB of memory"
    if parts := " + ".join(f"{part} {size / GIB:.1f}" for part, size in need.memory_parts if size):
        memory += f" ({parts} GiB)"
    wants = (
        f"the {need.pool} pool's replicas need {need.cpus:g} CPU, {need.gpus:g} GPU and "
        f"{memory} each on one node"
    )
    if need.gpus and not any(node.gpus for node in nodes):
        return f"{wants}, and the cluster has no GPU: set {need.pool}.replicas.num_gpus to 0"
    if need.gpus > max(node.gpus for node in nodes):
        return f"{wants}; the largest node has {max(n.gpus for n in nodes):g} GPU"
    if need.cpus > max(node.cpus for node in nodes):
        return f"{wants}; the largest node has {max(n.cpus for n in nodes):g} CPU"
    largest = max(node.memory_bytes for node in nodes)
    if need.memory_bytes > largest:  # alone on the largest node it would not fit either
        knobs = f"lower {either(need.memory_knobs)}, or " if need.memory_knobs else ""
        return f"{wants}; the largest node has {largest / GIB:.1f} GiB: {knobs}use larger nodes"
    left = "; ".join(node_left(name, free[name], placed[name]) for name in free)
    knobs = either((f"{need.pool}.replicas.num_replicas", *need.memory_knobs))
    return (
        f"{wants}, and the nodes have too little left after the other replicas of this job's "
        f"pools ({left}): lower {knobs} (or another pool's), or add nodes"
    )


def node_left(name: str, left: list[float], pools: Counter) -> str:
    """'n1: 2 CPU, 0 GPU, 3.5 GiB left beside scorer x2, rewriter x1'."""
    cpus, gpus, memory = left
    beside = ", ".join(f"{pool} x{count}" for pool, count in sorted(pools.items()))
    text = f"{name}: {cpus:g} CPU, {gpus:g} GPU, {memory / GIB:.1f} GiB left"
    return f"{text} beside {beside}" if beside else text


def either(fields) -> str:
    """('a', 'b', 'c') -> 'a, b or c'."""
    *rest, last = fields
    return f"{', '.join(rest)} or {last}" if rest else last


def pool_needs(name: str, pool, model_folder: str | None) -> list[ReplicaNeed]:
    """One ReplicaNeed per replica of a PoolConfig."""
    engine, replicas = pool.engine, pool.replicas
    gpus = engine.gpus_per_engine() if engine.gpus_per_engine() > 1 else replicas.num_gpus
    parts = replica_memory_parts(engine, gpus > 0, model_folder)
    knobs = [
        f"{name}.engine.{field}"
        for part, field in (("KV cache", "kv_cache_gib"), ("logits", "max_batch_tokens"))
        if parts.get(part)
    ]
    need = ReplicaNeed(
        name,
        replicas.num_cpus,
        gpus,
        sum(parts.values()),
        tuple(parts.items()),
        tuple(knobs),
    )
    return [need] * replicas.num_replicas


def cluster_nodes(free_memory: bool = True) -> list[NodeCapacity]:
    """Live nodes of the connected Ray cluster, with what Ray schedules on them: CPUs and GPUs
    in all, and memory not yet reserved (`free_memory`: replicas of other jobs, say another
    suite on the same cluster, reserve their estimate) or in all."""
    import ray

    free = available_memory_per_node() if free_memory else {}
    return [
        NodeCapacity(
            node["NodeManagerAddress"] + f"/{node['NodeID'][:6]}",
            node["Resources"].get("CPU", 0.0),
            node["Resources"].get("GPU", 0.0),
            free.get(node["NodeID"], node["Resources"].get("memory", 0.0)),
        )
        for node in ray.nodes()
        if node["Alive"]
    ]


def available_memory_per_node() -> dict[str, float]:
    """Node id -> Ray's `memory` resource not reserved now; {} when Ray cannot say (its
    per-node view is not public API)."""
    try:
        from ray._private.state import available_resources_per_node

        per_node = available_resources_per_node()
        return {node: free.get("memory", 0.0) for node, free in per_node.items()}
    except Exception:  # an older or newer Ray without it: plan against the nodes' totals
        return {}


def check_pools_fit(pools: dict, wait_s: float = 0.0) -> None:
    """Raise ValueError, one line per pool, if the pools cannot be placed on the cluster; with
    `wait_s`, ask the autoscaler for them and wait that long for nodes to join first."""
    import time

    needs = [
        need
        for name, pool in pools.items()
        for need in pool_needs(name, pool, model_folder(pool.engine))
    ]
    held = not placement_problems(needs, cluster_nodes(free_memory=False))
    # Replicas closed a moment ago (this process's last pools) free their memory within
    # seconds: when only memory others hold is in the way, look again for a while.
    deadline = time.monotonic() + max(wait_s, RELEASE_GRACE_S if held else 0.0)
    requested = False
    try:
        while problems := placement_problems(needs, nodes := cluster_nodes()):
            if time.monotonic() >= deadline:
                waited = f" (waited {wait_s:g} s for nodes)" if wait_s else ""
                others = "; memory there is reserved by other replicas (another job?)"
                raise ValueError("; ".join(problems) + waited + (others if held else ""))
            if not requested and wait_s:  # an autoscaler adds nodes for pending demand only
                from ray.autoscaler.sdk import request_resources

                bundles = [bundle for need in needs if (bundle := need_bundle(need))]
                request_resources(bundles=bundles)
                requested = True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    finally:
        if requested:  # a standing request would keep those nodes up after the job
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
    check_free_cpu(sum(node.cpus for node in nodes) - sum(need.cpus for need in needs))


def need_bundle(need: ReplicaNeed) -> dict:
    bundle = {"CPU": need.cpus, "GPU": need.gpus}
    return {key: value for key, value in bundle.items() if value}
