"""A pool of real vLLM replicas behind the Ray Data client gives the bare engine's numbers."""

import pytest

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.requests import generate_requests
from tests.conftest import bbh_examples
from tests.failures import candidate_requests

pytestmark = [pytest.mark.ray, pytest.mark.engine]


@pytest.fixture(scope="module")
def client(local_ray):
    replicas = ReplicaConfig(num_replicas=2, num_cpus=0.5, batch_rows=7)
    client = RayDataClient(ReplicaPool.start(VllmConfig(), replicas))
    yield client
    client.close()


def test_pool_of_two_matches_the_bare_engine(client, vllm_engine):
    examples = bbh_examples("hyperbaton", 15) + bbh_examples("boolean_expressions", 15)
    requests = candidate_requests([("a", "Answer."), ("b", "")], examples)
    expected = vllm_engine.score(requests)
    got = client.score(requests)
    assert got.column("request_id").to_pylist() == requests.column("request_id").to_pylist()
    assert got.column("n_tokens").to_pylist() == expected.column("n_tokens").to_pylist()
    assert got.column("logprob_sum").to_pylist() == pytest.approx(
        expected.column("logprob_sum").to_pylist(), abs=1e-3
    )
    per_replica = client.pools["scorer"].stats()
    assert all(s["calls"] > 0 for s in per_replica), f"a replica got no work: {per_replica}"
    assert client.stats()["scorer"]["rows"] == requests.num_rows


def test_pool_generation_matches_the_bare_engine(client, vllm_engine):
    messages = [("", f"Name a colour number {i}.") for i in range(9)]
    requests = generate_requests(messages, task_id="t", n=2, temperature=0.8, max_tokens=6, seed=3)
    got = client.generate(requests)
    assert got.column("request_id").to_pylist() == [i for i in range(9) for _ in range(2)]
    assert (
        got.column("text").to_pylist() == vllm_engine.generate(requests).column("text").to_pylist()
    )
    assert client.count_tokens(["Name a colour.", ""]) == vllm_engine.count_tokens(
        ["Name a colour.", ""]
    )


def test_a_killed_replica_and_a_killed_engine_core_lose_no_row(client):
    """Kill one replica's process, then the other's vLLM engine-core process, each during a
    scoring job: both jobs give the uninterrupted job's numbers and the pool is whole again."""
    import ray

    examples = bbh_examples("hyperbaton", 16) + bbh_examples("boolean_expressions", 16)
    requests = candidate_requests([("a", "Answer.")], examples)
    pool = client.pools["scorer"]
    expected = client.score(requests).column("logprob_sum").to_pylist()
    for index, victim in ((0, "replica"), (1, "engine core")):
        replica_pid = ray.get(pool.actors[index].pid.remote())
        processes = [replica_pid, *child_pids(replica_pid)]  # vLLM's engine core and worker
        pid = engine_core_pid(replica_pid) if victim == "engine core" else replica_pid
        kill_when_pool_is_busy(pool, pid)
        got = client.score(requests).column("logprob_sum").to_pylist()
        assert got == pytest.approx(expected, abs=1e-3), victim
        health = wait_for_whole_pool(pool)
        assert health["failed_calls"] >= index + 1, f"killing the {victim} hit no call"
        # the replica's process tree went with it: no orphan holds an engine's memory
        assert not [p for p in processes if running(p)], victim


def engine_core_pid(replica_pid):
    """vLLM runs its engine core in a child process of the replica."""
    import psutil

    children = psutil.Process(replica_pid).children(recursive=True)
    cores = [child.pid for child in children if "EngineCore" in child.name()]
    assert len(cores) == 1, [(child.pid, child.name()) for child in children]
    return cores[0]


def kill_when_pool_is_busy(pool, pid):
    import os
    import signal
    import threading
    import time

    import ray

    served_before = sum(ray.get(pool.dispatcher.served_counts.remote()))

    def kill():
        while sum(ray.get(pool.dispatcher.served_counts.remote())) < served_before + 2:
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill, daemon=True).start()


def wait_for_whole_pool(pool, timeout=300):
    import time

    deadline = time.monotonic() + timeout
    while (health := pool.health())["live"] < len(pool.actors):
        assert time.monotonic() < deadline, health
        time.sleep(1)
    return health


def child_pids(pid):
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def running(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
