"""A node holding a replica leaves the cluster mid-round: the round finishes on what is left,
the pool says it is short, and a pool with nobody left fails in one line naming it.

A CPU head and two worker nodes of one logical GPU each, on loopback; one fake replica per GPU
node. Nodes are removed through `ray.cluster_utils.Cluster`, as a preempted machine leaves.
"""

import threading
import time

import pytest

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.errors import PoolDownError
from pmpo_ray.suite.checkpoints import SuiteCheckpoints
from tests.failures import scoring_table
from tests.fakes import FakeEngine, SlowFakeReplica, scripted_rewrites
from tests.ray_clusters import loopback_cluster

pytestmark = pytest.mark.ray
ROUND_SECONDS = {"generation_seconds": 1.0, "scoring_seconds": 2.0, "wall_seconds": 3.0}


@pytest.fixture
def cluster():
    gpu_node = {"num_cpus": 1, "num_gpus": 1}
    with loopback_cluster([gpu_node, gpu_node], namespace="pmpo-node-loss") as cluster:
        yield cluster


def node_of(cluster, actor):
    import ray

    node_id = ray.get(actor.node_id.remote())
    return next(node for node in cluster.worker_nodes if node.node_id == node_id)


def remove_node_mid_job(cluster, pool, node):
    """Remove `node` once the next job has sent its first batches."""
    import ray

    served_before = sum(ray.get(pool.dispatcher.served_counts.remote()))

    def remove_when_busy():
        while sum(ray.get(pool.dispatcher.served_counts.remote())) < served_before + 3:
            time.sleep(0.05)
        cluster.remove_node(node, allow_graceful=False)

    thread = threading.Thread(target=remove_when_busy, daemon=True)
    thread.start()
    return thread


def test_a_lost_node_leaves_the_pool_short_and_a_pool_with_nobody_left_fails_in_one_line(
    cluster, tmp_path
):
    replicas = ReplicaConfig(num_replicas=2, num_cpus=0, num_gpus=1, restart_timeout_s=5)
    pool = ReplicaPool.start(VllmConfig(), replicas, replica_class=SlowFakeReplica)
    client = RayDataClient(pool)
    try:
        requests = scoring_table(48)  # 24 one-second calls on two replicas
        expected = FakeEngine(scripted_rewrites).score(requests).column("logprob_sum").to_pylist()
        remover = remove_node_mid_job(cluster, pool, node_of(cluster, pool.actors[1]))
        result = client.score(requests)
        remover.join()
        assert result.column("logprob_sum").to_pylist() == expected
        health = pool.health()
        assert health["live"] == 1 and health["failed_calls"] >= 1
        progress = SuiteCheckpoints([], tmp_path, client).progress_line(1, ROUND_SECONDS)
        assert progress.endswith("; scorer pool short: 1 of 2 replicas live")
        assert client.stats()["scorer"]["rows"] == requests.num_rows

        # no GPU left for it anywhere: after the restart time-out it is gone for good
        deadline = time.monotonic() + 30
        while 1 not in pool.health()["gone"]:
            assert time.monotonic() < deadline, pool.health()
            time.sleep(0.5)

        cluster.remove_node(node_of(cluster, pool.actors[0]), allow_graceful=False)
        with pytest.raises(PoolDownError) as error:
            client.score(requests)
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith("the scorer pool has no live replica left of 2 (replica 0:")
    finally:
        client.close()
