"""Ray Data fan-out over replica pools in a real local Ray, with fake engines in the replicas."""

import pytest

from pmpo_ray.config import PromptFormat, ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.task import Task
from tests.failures import candidate_requests
from tests.fakes import FakeEngine, FakeReplica, scripted_rewrites

pytestmark = pytest.mark.ray
FORMAT = PromptFormat()


def toy_task(task_id):
    train = tuple(Example(str(i), f"question {i}", "the answer " * (i + 1)) for i in range(6))
    return Task(task_id, "supervised", "answer", "Think.", train, ())


@pytest.fixture(scope="module")
def client(local_ray):
    pool = ReplicaPool.start(
        VllmConfig(),
        ReplicaConfig(num_replicas=2, num_cpus=0.5, batch_rows=16),
        replica_class=FakeReplica,
    )
    client = RayDataClient(pool)
    yield client
    client.close()


def run_suite(n_tasks, client):
    jobs_per_round, jobs_before = [], client.jobs

    def count(round_index, runs, stats):
        jobs_per_round.append(client.jobs - jobs_before - sum(jobs_per_round))

    runs = [
        TaskRun(toy_task(f"task{i}"), OptimizerConfig(iterations=2), client.count_tokens, FORMAT)
        for i in range(n_tasks)
    ]
    results = run_rounds(runs, rewriter=client, scorer=client, on_round=count)
    return results, jobs_per_round


def test_ray_data_jobs_per_round_do_not_grow_with_tasks(client):
    one, jobs_one = run_suite(1, client)
    eight, jobs_eight = run_suite(8, client)
    assert jobs_one == jobs_eight
    assert max(jobs_eight) <= 2
    stats = client.pools["scorer"].stats()
    assert all(s["calls"] > 0 for s in stats), f"a replica got no batch: {stats}"
    in_process = FakeEngine(scripted_rewrites)
    [alone] = run_rounds(
        [
            TaskRun(
                toy_task("task0"), OptimizerConfig(iterations=2), in_process.count_tokens, FORMAT
            )
        ],
        rewriter=in_process,
        scorer=in_process,
    )
    for result in (one[0], eight[0], eight[7]):
        assert result.best.loss == alone.best.loss
        assert [c.text for c in result.history[-1].candidates] == [
            c.text for c in alone.history[-1].candidates
        ]


def test_ray_data_job_returns_each_request_once_in_order(client):
    examples = [Example(str(i), f"q{i}", "a b c"[: 1 + 2 * (i % 3)]) for i in range(50)]
    requests = candidate_requests([("p", "x"), ("q", "carefully")], examples)
    requests = requests.take(list(reversed(range(requests.num_rows))))  # ids out of order
    result = client.score(requests)
    assert result.column("request_id").to_pylist() == requests.column("request_id").to_pylist()
    assert (
        result.column("logprob_sum").to_pylist()
        == FakeEngine(scripted_rewrites).score(requests).column("logprob_sum").to_pylist()
    )


def test_pools_that_reserve_every_cpu_are_refused(local_ray):
    """Replicas holding all of the cluster's CPUs would leave Ray Data nothing for its own
    tasks, and the first job would hang: refused up front instead."""
    cpus = ray_cpus()
    whole = ReplicaPool(["replica"], reserved_cpus=cpus)
    with pytest.raises(ValueError, match="Ray Data needs at least 1"):
        RayDataClient(whole)
    with pytest.raises(ValueError, match="leave 0 CPU free"):  # two pools sharing the CPUs
        RayDataClient(
            ReplicaPool(["a"], reserved_cpus=cpus - 1), ReplicaPool(["b"], reserved_cpus=1)
        )
    RayDataClient(ReplicaPool(["replica"], reserved_cpus=cpus - 1))


def ray_cpus() -> float:
    import ray

    return ray.cluster_resources()["CPU"]
