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

The CPU KV cache is planned too: unless a config sets `kv_cache_gib`, it is sized for a full
scoring batch of the model (`auto_kv_cache_gib`), and the same number goes into the estimate
and into VLLM_CPU_KVCACHE_SPACE (vllm_engine.VllmConfig.cpu_kv_cache_gib).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
# torch + the engine's runtime in a replica's processes, before weights and KV cache (3.98 GiB
# measured at rest, less 0.5 GiB of weights and the 1 GiB cache).
PROCESS_BASE_BYTES = int(2.5 * GIB)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
LOGPROB_COPIES = 1  # float32 logits of a full batch; measured peaks stay below one copy
# A replica whose engine loads no model (the simulated backend): a Ray actor with pyarrow.
MODELLESS_PROCESS_BYTES = 512 * 2**20
# How long a check waits for memory that other replicas hold to be freed (a pool closed by this
# process a moment ago releases its reservation asynchronously).
RELEASE_GRACE_S = 10.0
# The auto KV cache holds a full batch's keys and values with this much to spare: each row
# wastes up to a block (32 tokens on CPU) in its last block, and prefixes read from the cache
# (prefix sharing) stay there while the rows that share them run.
KV_CACHE_HEADROOM = 1.5
# The auto KV cache of a model whose config.json is not on this machine (a hub id that the
# replicas download): a full 8192-token batch of an 8B Llama-type model in float32 (2 x 32
# layers x 8 KV heads x 128 dims x 4 bytes = 256 KiB a token, 2 GiB) with the headroom.
FALLBACK_KV_CACHE_GIB = 4


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


def replica_memory_bytes(engine, on_gpu: bool, model_folder: str | None) -> int:
    """Host memory of one replica (see replica_memory_parts)."""
    return sum(replica_memory_parts(engine, on_gpu, model_folder).values())


def replica_memory_parts(engine, on_gpu: bool, model_folder: str | None) -> dict[str, int]:
    """Host memory of one replica by part: process base, weights (unknown: 0, the model is
    not on this machine), KV cache on CPU, and the scoring batch's logits/logprobs on CPU."""
    if not getattr(engine, "loads_model", True):  # the simulated backend: no weights, no torch
        return {"process": MODELLESS_PROCESS_BYTES}
    if on_gpu:  # weights, KV cache and logits live in GPU memory (gpu_memory_utilization)
        return {"process": PROCESS_BASE_BYTES}
    weights, vocab = model_weights_and_vocab(model_folder, engine.dtype, on_gpu)
    return {
        "process": PROCESS_BASE_BYTES,
        "weights": weights,
        "KV cache": cpu_kv_cache_bytes(engine, model_folder),
        "logits": batch_tokens(engine) * vocab * 4 * LOGPROB_COPIES,
    }


def cpu_kv_cache_bytes(engine, model_folder: str | None) -> int:
    """The KV cache a CPU replica allocates: the backend's own sizing (vLLM's whole GiB),
    nothing for a backend without one (transformers allocates per batch, in the logits' shadow)."""
    sizing = getattr(engine, "cpu_kv_cache_gib", None)
    return sizing(model_folder) * GIB if sizing else 0


def batch_tokens(engine) -> int:
    """Tokens of one forward batch: vLLM is told max(max_batch_tokens, window) (vllm_engine)."""
    return max(engine.max_batch_tokens, engine.model.max_model_len)


def auto_kv_cache_gib(engine, model_folder: str | None) -> int:
    """Whole GiB (vLLM's unit, at least 1) of KV cache that a full scoring batch of the model
    needs on CPU, with headroom; FALLBACK_KV_CACHE_GIB when the model's config is not here."""
    per_token = kv_bytes_per_token(model_folder, engine.dtype)
    if per_token is None:
        return FALLBACK_KV_CACHE_GIB
    return max(1, math.ceil(batch_tokens(engine) * per_token * KV_CACHE_HEADROOM / GIB))


def kv_bytes_per_token(folder: str | None, dtype: str) -> int | None:
    """Keys and values of one token on CPU: 2 x layers x KV heads x head dim x dtype bytes,
    from the model folder's config.json (auto dtype: float32 on CPU); None without it."""
    config = model_text_config(folder)
    layers, heads = config.get("num_hidden_layers"), config.get("num_attention_heads")
    if not layers or not heads:
        return None
    kv_heads = config.get("num_key_value_heads") or heads  # no GQA: every head has its own
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // heads
    return 2 * layers * kv_heads * head_dim * DTYPE_BYTES.get(dtype, 4) or None


def model_text_config(folder: str | None) -> dict:
    """The language model's part of config.json (multimodal configs nest it); {} without one."""
    if folder is None or not (Path(folder) / "config.json").exists():
        return {}
    config = json.loads((Path(folder) / "config.json").read_text())
    return config.get("text_config", config)


def model_weights_and_vocab(folder: str | None, dtype: str, on_gpu: bool) -> tuple[int, int]:
    """Weight bytes at the engine's dtype, and the vocabulary size, from the model folder."""
    config = model_text_config(folder)
    if not config:
        return 0, 0
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


def model_folder(engine) -> str | None:
    """The engine's model folder on this machine; None for an engine that loads no model
    (the simulated backend: nothing to find, and nothing to download)."""
    from pmpo_ray.engines.models import local_model_folder

    return local_model_folder(engine.model) if getattr(engine, "loads_model", True) else None


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


def replica_memory_reservation(engine, replicas) -> int:
    """Bytes of Ray's `memory` resource one replica reserves: its estimate. Ray then never
    places more replicas on a node than their estimates allow, across jobs too: three suites
    on one machine are refused or queued, not killed mid-round by the memory monitor."""
    gpus = engine.gpus_per_engine() if engine.gpus_per_engine() > 1 else replicas.num_gpus
    return replica_memory_bytes(engine, gpus > 0, model_folder(engine))


def check_pools_fit(pools: dict, wait_s: float = 0.0) -> None:
    """Raise ValueError, one line per pool, if the pools cannot be placed on the cluster; with
    `wait_s`, ask the autoscaler for them and wait that long for nodes to join first."""
    import time

    from pmpo_ray.engines.ray_data_client import check_free_cpu

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
