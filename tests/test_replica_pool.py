"""A pool of real vLLM replicas behind the Ray Data client gives the bare engine's numbers."""

import pytest

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.requests import generate_requests, score_requests
from tests.conftest import bbh_examples

pytestmark = [pytest.mark.ray, pytest.mark.engine]


@pytest.fixture(scope="module")
def client(local_ray):
    replicas = ReplicaConfig(num_replicas=2, num_cpus=0.5, batch_rows=7)
    client = RayDataClient(ReplicaPool.start(VllmConfig(), replicas))
    yield client
    client.close()


def test_pool_of_two_matches_the_bare_engine(client, vllm_engine):
    examples = bbh_examples("hyperbaton", 15) + bbh_examples("boolean_expressions", 15)
    requests = score_requests(
        [("a", "Answer."), ("b", "")],
        examples,
        task_id="t",
        kind="candidate",
        role="system",
    )
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
