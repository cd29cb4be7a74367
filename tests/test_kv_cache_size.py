"""The CPU KV cache is sized from what a full scoring batch of the model needs, unless a config
sets it; the memory estimate and the variable vLLM reads get the same number. Pure: model
folders are config.json files written here; nothing loads or downloads a model."""

import json

import pytest

from pmpo_ray.config import ModelConfig
from pmpo_ray.engines.models import model_folder_if_here
from pmpo_ray.engines.replica_memory import (
    FALLBACK_KV_CACHE_GIB,
    GIB,
    kv_bytes_per_token,
    replica_memory_parts,
)
from pmpo_ray.engines.vllm_engine import VllmConfig

# SmolLM2-135M-Instruct, the default model: 30 layers, 3 KV heads of 64 dims.
SMOLLM2 = {
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "hidden_size": 576,
    "vocab_size": 49152,
}
# A made-up 8B-class model: 32 layers, 8 KV heads of 128 dims (head_dim from hidden_size).
BIGGER = {
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "hidden_size": 4096,
    "vocab_size": 128256,
}


def model_folder(tmp_path, config: dict) -> str:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def engine_on(folder: str, **settings) -> VllmConfig:
    """A vLLM config whose model is the local folder `folder`."""
    model = ModelConfig(name=folder, **settings.pop("model", {}))
    return VllmConfig(model=model, **settings)


def test_the_default_models_batch_needs_one_gib(tmp_path):
    folder = model_folder(tmp_path, SMOLLM2)
    assert kv_bytes_per_token(folder, "auto") == 2 * 30 * 3 * 64 * 4  # float32 on CPU
    # 8192 tokens x 45 KiB x 1.5 headroom = 0.53 GiB: vLLM's smallest cache, 1 GiB
    assert VllmConfig().cpu_kv_cache_gib(folder) == 1


def test_the_materialized_default_model_reads_the_same():
    folder = model_folder_if_here(ModelConfig())  # never converts or downloads
    if folder is None:
        pytest.skip("the default model is not materialized here (`pmpo model` does it)")
    assert kv_bytes_per_token(folder, "auto") == 2 * 30 * 3 * 64 * 4
    assert VllmConfig().cpu_kv_cache_gib(folder) == 1


def test_a_bigger_model_gets_a_bigger_cache(tmp_path):
    folder = model_folder(tmp_path, BIGGER)
    per_token = 2 * 32 * 8 * 128 * 4  # 256 KiB a token in float32
    assert kv_bytes_per_token(folder, "float32") == per_token
    assert VllmConfig().cpu_kv_cache_gib(folder) == 3  # 8192 tokens: 2 GiB x 1.5
    assert VllmConfig(dtype="bfloat16").cpu_kv_cache_gib(folder) == 2  # 1 GiB x 1.5, rounded up
    # the batch is max(max_batch_tokens, max_model_len), as vLLM is told
    long_window = VllmConfig(model=ModelConfig(max_model_len=32768))
    assert long_window.cpu_kv_cache_gib(folder) == 12
    assert VllmConfig(max_batch_tokens=16384).cpu_kv_cache_gib(folder) == 6


def test_configs_without_gqa_or_with_a_nested_text_config(tmp_path):
    no_gqa = {key: value for key, value in BIGGER.items() if key != "num_key_value_heads"}
    assert kv_bytes_per_token(model_folder(tmp_path, no_gqa), "float32") == 2 * 32 * 32 * 128 * 4
    nested = tmp_path / "multimodal"
    nested.mkdir()
    folder = model_folder(nested, {"text_config": BIGGER, "vision_config": {}})
    assert VllmConfig().cpu_kv_cache_gib(folder) == 3


def test_an_explicit_size_wins(tmp_path):
    folder = model_folder(tmp_path, BIGGER)
    assert VllmConfig(kv_cache_gib=2).cpu_kv_cache_gib(folder) == 2
    assert VllmConfig(kv_cache_gib=0.3).cpu_kv_cache_gib(folder) == 1  # vLLM's least
    assert VllmConfig(kv_cache_gib=5.6).cpu_kv_cache_gib(None) == 6


def test_a_model_whose_config_is_not_here_takes_the_fallback(tmp_path):
    assert VllmConfig().cpu_kv_cache_gib(None) == FALLBACK_KV_CACHE_GIB
    assert VllmConfig().cpu_kv_cache_gib(str(tmp_path)) == FALLBACK_KV_CACHE_GIB  # no config
    assert kv_bytes_per_token(model_folder(tmp_path, {"vocab_size": 10}), "auto") is None


def test_a_hub_model_not_cached_is_not_downloaded_for_its_size(monkeypatch):
    import huggingface_hub

    asked = []

    def cache_only(model_id, local_files_only=False, **kwargs):
        asked.append(local_files_only)
        raise FileNotFoundError(model_id)  # what the hub client says for a cache miss

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cache_only)
    hub = VllmConfig(model=ModelConfig(name="no-such-org/no-such-model", allow_download=True))
    env = hub.process_env(on_gpu=False)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == str(FALLBACK_KV_CACHE_GIB)
    assert asked == [True]  # the local cache was looked in, the hub never asked


def test_vllm_reads_the_size_the_memory_estimate_counts(tmp_path):
    folder = model_folder(tmp_path, BIGGER)
    for engine in (engine_on(folder), engine_on(folder, kv_cache_gib=2)):
        env = engine.process_env(on_gpu=False)
        counted = replica_memory_parts(engine, on_gpu=False, model_folder=folder)["KV cache"]
        assert int(env["VLLM_CPU_KVCACHE_SPACE"]) * GIB == counted
        assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert engine_on(folder).process_env(on_gpu=False)["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert engine_on(folder, kv_cache_gib=2).process_env(False)["VLLM_CPU_KVCACHE_SPACE"] == "2"
    # on a GPU vLLM sizes its cache from gpu_memory_utilization: no CPU cache variable
    assert "VLLM_CPU_KVCACHE_SPACE" not in engine_on(folder).process_env(on_gpu=True)


def test_the_estimate_counts_the_auto_cache(tmp_path):
    folder = model_folder(tmp_path, BIGGER)
    parts = replica_memory_parts(VllmConfig(), on_gpu=False, model_folder=folder)
    assert parts["KV cache"] == 3 * GIB
    assert parts["logits"] == 8192 * BIGGER["vocab_size"] * 4
    gpu = replica_memory_parts(VllmConfig(), on_gpu=True, model_folder=folder)
    assert "KV cache" not in gpu  # in GPU memory
