"""Replica placement and Ray Data fan-out on a 3-node Ray cluster with logical GPUs.

A CPU-only head and two worker nodes of 2 logical GPUs each, all on loopback; replicas hold a
fixed-latency fake engine, so what is tested is where Ray puts them and how rows flow.
"""

from collections import Counter

import pyarrow as pa
import pytest

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.requests import SCORE_REQUEST_SCHEMA
from tests.fakes import FakeEngine, PlacedFakeReplica, scripted_rewrites
from tests.ray_clusters import loopback_cluster

pytestmark = pytest.mark.ray

GPU_NODES = 2
GPUS_PER_NODE = 2
GPUS = GPU_NODES * GPUS_PER_NODE


@pytest.fixture(scope="module")
def cluster():
    gpu_node = {"num_cpus": 2, "num_gpus": GPUS_PER_NODE}
    with loopback_cluster([gpu_node] * GPU_NODES, namespace="pmpo-multinode") as cluster:
        yield cluster


def gpu_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0}


def start_pool(engine: VllmConfig, replicas: ReplicaConfig) -> ReplicaPool:
    return ReplicaPool.start(engine, replicas, replica_class=PlacedFakeReplica)


def placements(pool: ReplicaPool) -> list[dict]:
    import ray

    return ray.get([actor.placement.remote() for actor in pool.actors])


def wait_for_free_gpus(expected: float, timeout_s: float = 10.0) -> float:
    """Freed resources reach the scheduler's view a moment after a kill."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    while (free := ray.available_resources().get("GPU", 0)) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return free


def scoring_round(tasks: int = 4, candidates: int = 5, examples: int = 15) -> pa.Table:
    """A round's scoring table of several tasks and candidates, request ids out of order."""
    rows = []
    for t in range(tasks):
        for c in range(candidates):
            prompt = f"Prompt {c} of task {t}." + (" Read carefully." if c % 2 else "")
            for e in range(examples):
                rows.append(
                    {
                        "task_id": f"task{t}",
                        "candidate_id": f"c{c}",
                        "example_id": f"e{e}",
                        "kind": "candidate",
                        "prompt": prompt,
                        "role": "raw",
                        "input": f" Question {e}?",
                        "continuation": " ".join(["answer"] * (1 + (e + c + t) % 4)),
                        "weight": 1.0,
                    }
                )
    for request_id, row in zip(reversed(range(len(rows))), rows):
        row["request_id"] = request_id
    return pa.Table.from_pylist(rows, schema=SCORE_REQUEST_SCHEMA)


def logprob_by_request(table: pa.Table) -> dict[int, float]:
    ids = table.column("request_id").to_pylist()
    return dict(zip(ids, table.column("logprob_sum").to_pylist(), strict=True))


def test_one_replica_per_gpu_lands_on_the_gpu_nodes(cluster):
    pool = start_pool(VllmConfig(), ReplicaConfig(num_replicas=GPUS, num_cpus=1, num_gpus=1))
    try:
        places = placements(pool)
    finally:
        pool.shutdown()
    gpu_nodes = gpu_node_ids()
    assert all(p["node_id"] in gpu_nodes for p in places), f"a replica on the head: {places}"
    assert all(len(p["gpu_ids"]) == 1 for p in places), places
    assert len({(p["node_id"], p["gpu_ids"][0]) for p in places}) == GPUS, "two share a GPU"
    assert Counter(p["node_id"] for p in places) == {n: GPUS_PER_NODE for n in gpu_nodes}
    assert wait_for_free_gpus(GPUS) == GPUS


def test_tensor_parallel_replica_packs_its_gpus_on_one_node(cluster):
    import ray
    from ray.util import placement_group_table

    tp = 2
    engine = VllmConfig(tensor_parallel_size=tp)
    # Two CPUs per replica: more than one GPU bundle's share, as a tokenizing replica asks.
    pool = start_pool(engine, ReplicaConfig(num_replicas=GPUS // tp, num_cpus=2, num_gpus=1))
    try:
        places = placements(pool)
        workers = ray.get([actor.tensor_parallel_workers.remote() for actor in pool.actors])
        groups = placement_group_table()
    finally:
        pool.shutdown()
    for place, group_workers in zip(places, workers, strict=True):
        group = groups[place["placement_group_id"]]
        assert group["strategy"] == "STRICT_PACK" and group["state"] == "CREATED"
        assert sum(bundle.get("GPU", 0) for bundle in group["bundles"].values()) == tp
        assert set(group["bundles_to_node_id"].values()) == {place["node_id"]}
        assert place["gpu_ids"] == [], "the replica itself holds no GPU; its workers do"
        assert [w["node_id"] for w in group_workers] == [place["node_id"]] * tp
        assert len({w["gpu_ids"][0] for w in group_workers}) == tp, group_workers
    assert {p["node_id"] for p in places} == gpu_node_ids(), "one group per GPU node"
    assert wait_for_free_gpus(GPUS) == GPUS, "placement groups outlived the pool"


def test_round_fans_out_over_nodes_and_matches_one_replica(cluster):
    import ray

    requests = scoring_round()
    replicas = ReplicaConfig(num_replicas=GPUS, num_cpus=0.5, num_gpus=1, batch_rows=16)
    pool = start_pool(VllmConfig(), replicas)
    try:
        places = placements(pool)
        result = RayDataClient(pool).score(requests)
        served = ray.get([actor.served.remote() for actor in pool.actors])
    finally:
        pool.shutdown()
    expected_ids = requests.column("request_id").to_pylist()
    assert result.column("request_id").to_pylist() == expected_ids
    counts = Counter(request_id for ids in served for request_id in ids)
    assert sorted(counts) == sorted(expected_ids) and set(counts.values()) == {1}
    serving_nodes = {place["node_id"] for place, ids in zip(places, served) if ids}
    assert serving_nodes == gpu_node_ids(), f"rows per replica: {[len(ids) for ids in served]}"

    # The same table on one replica of one node.
    single = RayDataClient(
        start_pool(VllmConfig(), replicas.model_copy(update={"num_replicas": 1}))
    )
    try:
        alone = single.score(requests)
    finally:
        single.close()
    in_process = FakeEngine(scripted_rewrites).score(requests)
    assert logprob_by_request(result) == logprob_by_request(alone)
    assert logprob_by_request(result) == logprob_by_request(in_process)
