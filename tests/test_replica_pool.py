"""A pool of real vLLM replicas in a real local Ray gives the bare engine's numbers."""

import pytest

from pmpo_ray.config import EngineConfig, ReplicaConfig
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.requests import generate_requests, render_context, score_requests
from tests.conftest import bbh_examples

pytestmark = [pytest.mark.ray, pytest.mark.engine]


@pytest.fixture(scope="module")
def pool(local_ray):
    replicas = ReplicaConfig(num_replicas=2, num_cpus=1, max_rows_per_call=7)
    pool = ReplicaPool.start(EngineConfig(backend="vllm"), replicas)
    yield pool
    pool.shutdown()


def test_pool_of_two_matches_the_bare_engine(pool, vllm_engine, tokenizer):
    examples = bbh_examples("hyperbaton", 15) + bbh_examples("boolean_expressions", 15)
    requests = score_requests(
        tokenizer,
        [("a", "Answer."), ("b", "")],
        examples,
        task_id="t",
        kind="candidate",
        role="system",
    )
    expected = vllm_engine.score(requests)
    got = pool.score(requests)
    assert got.column("request_id").to_pylist() == requests.column("request_id").to_pylist()
    assert got.column("n_tokens").to_pylist() == expected.column("n_tokens").to_pylist()
    assert got.column("logprob_sum").to_pylist() == pytest.approx(
        expected.column("logprob_sum").to_pylist(), abs=1e-3
    )
    stats = pool.stats()
    assert all(s["calls"] > 0 for s in stats), f"a replica got no work: {stats}"
    assert sum(s["rows"] for s in stats) == requests.num_rows


def test_pool_generation_matches_the_bare_engine(pool, vllm_engine, tokenizer):
    contexts = [
        render_context(tokenizer, "", f"Name a colour number {i}.", "system") for i in range(9)
    ]
    requests = generate_requests(contexts, task_id="t", n=2, temperature=0.8, max_tokens=6, seed=3)
    got = pool.generate(requests)
    assert got.column("request_id").to_pylist() == [i for i in range(9) for _ in range(2)]
    assert (
        got.column("text").to_pylist() == vllm_engine.generate(requests).column("text").to_pylist()
    )
