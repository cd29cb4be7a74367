"""Pools are checked against the cluster before any replica starts: GPUs, CPUs and memory."""

import json

import pytest

from pmpo_ray.config import ModelConfig, ReplicaConfig
from pmpo_ray.engines.hf_engine import HfConfig
from pmpo_ray.engines.pool_plan import NodeCapacity, ReplicaNeed, placement_problems, pool_needs
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.engines.replica_memory import (
    FALLBACK_KV_CACHE_GIB,
    GIB,
    LOGPROB_COPIES,
    PROCESS_BASE_BYTES,
    replica_memory_bytes,
)
from pmpo_ray.engines.vllm_engine import VllmConfig

CPU_NODE = NodeCapacity("cpu", cpus=16, gpus=0, memory_bytes=20 * GIB)


def model_folder(tmp_path, *, weight_bytes, stored="bfloat16", vocab=1000):
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": stored, "vocab_size": vocab}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * weight_bytes)
    return str(tmp_path)


def test_cpu_replica_memory_is_base_weights_kv_cache_and_the_logprob_batch(tmp_path):
    folder = model_folder(tmp_path, weight_bytes=2000, stored="bfloat16", vocab=1000)
    window = ModelConfig(max_model_len=256)  # vLLM batches max(max_batch_tokens, window)
    engine = VllmConfig(model=window, kv_cache_gib=2, max_batch_tokens=512, dtype="float32")
    logits = 512 * 1000 * 4 * LOGPROB_COPIES
    expected = PROCESS_BASE_BYTES + 4000 + 2 * GIB + logits  # weights up-cast to float32
    assert replica_memory_bytes(engine, on_gpu=False, model_folder=folder) == expected
    bigger_batch = engine.model_copy(update={"max_batch_tokens": 1024})
    assert replica_memory_bytes(bigger_batch, False, folder) - expected == logits
    # vLLM takes the KV cache in whole GiB, at least one
    small_cache = engine.model_copy(update={"kv_cache_gib": 0.3})
    assert replica_memory_bytes(small_cache, False, folder) - expected == -1 * GIB
    # on a GPU the weights, KV cache and logits live in GPU memory
    assert replica_memory_bytes(engine, on_gpu=True, model_folder=folder) == PROCESS_BASE_BYTES


def test_a_model_not_on_this_machine_counts_no_weights():
    engine = HfConfig(max_batch_tokens=100)
    assert replica_memory_bytes(engine, on_gpu=False, model_folder=None) == PROCESS_BASE_BYTES
    # vLLM's CPU cache is still allocated: the fallback size when the model's config is elsewhere
    fallback = PROCESS_BASE_BYTES + FALLBACK_KV_CACHE_GIB * GIB
    assert replica_memory_bytes(VllmConfig(), on_gpu=False, model_folder=None) == fallback


def test_a_gpu_pool_on_a_cpu_cluster_is_refused_with_how_to_fix_it():
    pool = PoolConfig(replicas=ReplicaConfig(num_gpus=1))
    [problem] = placement_problems(pool_needs("scorer", pool, None), [CPU_NODE])
    assert "scorer pool's replicas need 1 CPU, 1 GPU" in problem
    assert "the cluster has no GPU: set scorer.replicas.num_gpus to 0" in problem


def test_a_tensor_parallel_group_wider_than_any_node_is_refused():
    nodes = [NodeCapacity(f"gpu{i}", 8, 2, 64 * GIB) for i in range(4)]  # 8 GPUs, 2 per node
    pool = PoolConfig(engine=VllmConfig(tensor_parallel_size=4), replicas=ReplicaConfig())
    [problem] = placement_problems(pool_needs("rewriter", pool, None), nodes)
    assert "rewriter pool's replicas need 1 CPU, 4 GPU" in problem
    assert "the largest node has 2 GPU" in problem


def test_replicas_that_overfill_memory_are_refused_but_fewer_fit(tmp_path):
    folder = model_folder(tmp_path, weight_bytes=10_000)
    replicas = ReplicaConfig(num_replicas=4, num_cpus=1)
    pool = PoolConfig(engine=VllmConfig(kv_cache_gib=4), replicas=replicas)
    needs = pool_needs("scorer", pool, folder)
    assert needs[0].memory_bytes > 5 * GIB  # 4 such replicas do not fit in 20 GiB
    [problem] = placement_problems(needs, [CPU_NODE])
    assert "\n" not in problem
    # what a replica takes, part by part, so the user sees which knob matters
    assert "GiB of memory (process 2.5 + weights 0.0 + KV cache 4.0 + logits 0.0 GiB)" in problem
    assert "cpu: 13 CPU, 0 GPU, 0.4 GiB left beside scorer x3" in problem
    assert problem.endswith(
        "lower scorer.replicas.num_replicas, scorer.engine.kv_cache_gib or "
        "scorer.engine.max_batch_tokens (or another pool's), or add nodes"
    )
    assert placement_problems(needs[:3], [CPU_NODE]) == []


def test_a_pool_sharing_nodes_with_another_pool_is_told_what_the_other_holds(tmp_path):
    folder = model_folder(tmp_path, weight_bytes=10_000)
    scorer = PoolConfig(engine=VllmConfig(kv_cache_gib=4), replicas=ReplicaConfig(num_replicas=2))
    rewriter = PoolConfig(engine=VllmConfig(kv_cache_gib=8), replicas=ReplicaConfig())
    nodes = [NodeCapacity("a", 8, 0, 16 * GIB), NodeCapacity("b", 8, 0, 16 * GIB)]
    needs = pool_needs("scorer", scorer, folder) + pool_needs("rewriter", rewriter, folder)
    assert placement_problems(needs, nodes) == []  # rewriter on one node, the scorers beside
    [problem] = placement_problems(needs + pool_needs("scorer", scorer, folder), nodes)
    assert problem.startswith("the scorer pool's replicas need 1 CPU, 0 GPU and ~6.5 GiB")
    assert "beside rewriter x1" in problem and "beside scorer x2" in problem
    assert "lower scorer.replicas.num_replicas, scorer.engine.kv_cache_gib" in problem


def test_a_replica_larger_than_any_node_says_to_shrink_it_not_to_add_nodes(tmp_path):
    folder = model_folder(tmp_path, weight_bytes=10_000, vocab=50_000)
    pool = PoolConfig(engine=VllmConfig(kv_cache_gib=24), replicas=ReplicaConfig())
    [problem] = placement_problems(pool_needs("scorer", pool, folder), [CPU_NODE])
    assert "the largest node has 20.0 GiB" in problem
    assert problem.endswith(
        "lower scorer.engine.kv_cache_gib or scorer.engine.max_batch_tokens, or use larger nodes"
    )
    # a transformers engine has no KV cache knob; the batch is what it can lower
    hf = PoolConfig(engine=HfConfig(max_batch_tokens=2**17), replicas=ReplicaConfig())
    [problem] = placement_problems(pool_needs("scorer", hf, folder), [CPU_NODE])
    assert "kv_cache_gib" not in problem and "lower scorer.engine.max_batch_tokens" in problem


def test_two_pools_are_placed_together_across_nodes():
    nodes = [NodeCapacity("a", 4, 1, 16 * GIB), NodeCapacity("b", 4, 1, 16 * GIB)]
    scorer = [ReplicaNeed("scorer", 2, 1, 4 * GIB)]
    rewriter = [ReplicaNeed("rewriter", 2, 1, 8 * GIB)]
    assert placement_problems(scorer + rewriter, nodes) == []
    [problem] = placement_problems(scorer * 2 + rewriter, nodes)  # three GPU replicas, 2 GPUs
    assert problem.startswith("the scorer pool's replicas need")


@pytest.mark.ray
def test_an_impossible_pool_fails_before_any_replica_starts(local_ray):
    """On this CPU-only local Ray a GPU replica would wait forever; it is refused instead."""
    from pmpo_ray.engines.client import open_engines
    from pmpo_ray.engines.models import ModelNotFoundError

    gpu_pool = PoolConfig(replicas=ReplicaConfig(num_gpus=1))
    with pytest.raises(ValueError, match="scorer pool's replicas need .* the cluster has no GPU"):
        with open_engines(gpu_pool, on_ray=True):
            pass
    unknown = PoolConfig(engine=VllmConfig(model=ModelConfig(name=str(__file__) + "-missing")))
    with pytest.raises(ModelNotFoundError, match="-missing"):  # before any replica loads it
        with open_engines(unknown, on_ray=True):
            pass


@pytest.mark.ray
def test_replicas_reserve_their_estimate_so_another_job_is_refused_not_killed(
    local_ray, monkeypatch
):
    """Each replica reserves its memory estimate as Ray's `memory` resource, so a second
    suite on the same cluster is checked against what is left, not against the node's total."""
    from pmpo_ray.engines import pool_plan, replica_memory
    from pmpo_ray.engines.replicas import ReplicaPool
    from tests.fakes import FakeReplica

    monkeypatch.setattr(pool_plan, "RELEASE_GRACE_S", 1.0)
    replicas = ReplicaConfig(num_replicas=1, num_cpus=0)
    estimate = replica_memory.replica_memory_reservation(VllmConfig(), replicas)
    total = local_ray.cluster_resources()["memory"]
    fitting = int(total // estimate)  # replicas of the default model the local node holds
    assert fitting >= 1, (total, estimate)
    wanted = {"scorer": PoolConfig(replicas=ReplicaConfig(num_replicas=fitting, num_cpus=0))}
    pool_plan.check_pools_fit(wanted)  # an empty cluster holds them

    other_job = ReplicaPool.start(
        VllmConfig(), replicas, replica_class=FakeReplica, reserve_memory=True
    )
    try:
        free = sum(pool_plan.available_memory_per_node().values())
        assert free == pytest.approx(total - estimate, rel=0.01)
        with pytest.raises(ValueError, match="reserved by other replicas") as refused:
            pool_plan.check_pools_fit(wanted)
        assert str(refused.value).startswith("the scorer pool's replicas need")
    finally:
        other_job.shutdown()
    pool_plan.check_pools_fit(wanted)  # freed again (within the grace period)
