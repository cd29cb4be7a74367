"""The real backends on the real default model: agreement, ordering, errors, generation."""

import random

import numpy as np
import pyarrow as pa
import pytest

from pmpo_ray.config import PromptFormat
from pmpo_ray.engines.tokenization import RequestTooLongError
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example
from tests.conftest import bbh_examples

pytestmark = pytest.mark.engine

PROMPTS = [
    ("plain", "Answer the question."),
    (
        "format",
        "Answer with exactly one of the listed options, or a single number. No explanation.",
    ),
]


@pytest.fixture(scope="module")
def bbh_requests(tokenizer):
    examples = [
        *bbh_examples("navigate", 20),
        *bbh_examples("sports_understanding", 20),
        *bbh_examples("object_counting", 20),
    ]
    return score_requests(PROMPTS, examples, task_id="bbh", kind="candidate", role="system")


@pytest.fixture(scope="module")
def scored_both(bbh_requests, hf_engine, vllm_engine):
    return (
        hf_engine.score(bbh_requests, with_token_logprobs=True),
        vllm_engine.score(bbh_requests, with_token_logprobs=True),
    )


def flat_token_logprobs(table):
    return np.concatenate([np.asarray(v) for v in table.column("token_logprobs").to_pylist()])


def test_backends_agree_per_token(scored_both):
    hf, vllm = scored_both
    assert hf.column("n_tokens").to_pylist() == vllm.column("n_tokens").to_pylist()
    difference = np.abs(flat_token_logprobs(hf) - flat_token_logprobs(vllm))
    assert hf.num_rows >= 100 and len(difference) >= 100
    assert difference.mean() <= 0.05, f"mean |diff| {difference.mean():.4f} nats/token"


def mean_ce_by_prompt(table):
    rows = table.to_pylist()
    return {
        cid: np.mean([-r["logprob_sum"] / r["n_tokens"] for r in rows if r["candidate_id"] == cid])
        for cid, _ in PROMPTS
    }


def test_backends_rank_the_two_prompts_the_same(scored_both):
    hf, vllm = (mean_ce_by_prompt(t) for t in scored_both)
    assert abs(hf["plain"] - hf["format"]) > 0.05, f"prompts too close to rank: {hf}"
    assert (hf["plain"] < hf["format"]) == (vllm["plain"] < vllm["format"])


def test_logprob_sum_is_the_sum_of_token_values(scored_both):
    for table in scored_both:
        for row in table.select(["logprob_sum", "token_logprobs"]).to_pylist():
            assert row["logprob_sum"] == pytest.approx(sum(row["token_logprobs"]), abs=1e-3)
            assert row["logprob_sum"] < 0


def test_shuffled_lengths_come_back_in_order_exactly_once(bbh_requests, scored_both, vllm_engine):
    order = list(range(bbh_requests.num_rows))
    random.Random(7).shuffle(order)
    shuffled = bbh_requests.take(pa.array(order))
    result = vllm_engine.score(shuffled)
    assert result.column("request_id").to_pylist() == shuffled.column("request_id").to_pylist()
    reference = dict(
        zip(
            scored_both[1].column("request_id").to_pylist(),
            scored_both[1].column("logprob_sum").to_pylist(),
        )
    )
    for request_id, value in zip(
        result.column("request_id").to_pylist(), result.column("logprob_sum").to_pylist()
    ):
        assert value == pytest.approx(reference[request_id], abs=1e-4)


def test_greedy_flag_matches_greedy_generation(tokenizer, vllm_engine):
    message = ("Answer with Yes or No.", "Is the sky blue?")
    generated = vllm_engine.generate(generate_requests([message], task_id="t", max_tokens=3))
    answer = generated.column("text")[0].as_py()
    table = score_requests(
        [("p", "Answer with Yes or No.")],
        [Example("0", "Is the sky blue?", answer)],
        task_id="t",
        kind="adhoc",
        role="system",
    )
    assert vllm_engine.score(table).column("is_greedy").to_pylist() == [True]


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_too_long_request_names_the_row_and_excess(request, tokenizer, backend):
    engine = request.getfixturevalue(f"{backend}_engine")
    examples = [Example("ok", "Hi", "Hello"), Example("huge", "word " * 2100, "yes")]
    table = score_requests([("p", "x")], examples, task_id="t", kind="adhoc", role="system")
    with pytest.raises(
        RequestTooLongError,
        match=r"example 'huge'\): \d+ tokens, \d+ over the model's window of 2048",
    ):
        engine.score(table)


def test_truncate_left_scores_the_long_row(tokenizer, model_path):
    from pmpo_ray.engines.hf_engine import HfConfig, HfEngine

    engine = HfEngine(HfConfig(), PromptFormat(truncate_left=True))
    table = score_requests(
        [("p", "x")],
        [Example("huge", "word " * 2100, "yes")],
        task_id="t",
        kind="adhoc",
        role="system",
    )
    assert engine.score(table).column("n_tokens").to_pylist() == [1]


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_generation_is_seeded_and_returns_n_samples(request, tokenizer, backend):
    engine = request.getfixturevalue(f"{backend}_engine")
    message = ("", "Write one word about the sea.")
    table = generate_requests(
        [message, message], task_id="t", n=3, temperature=1.0, max_tokens=8, seed=11
    )
    first, second = engine.generate(table), engine.generate(table)
    assert first.column("request_id").to_pylist() == [0, 0, 0, 1, 1, 1]
    assert first.column("text").to_pylist() == second.column("text").to_pylist()
    assert all(0 < n <= 8 for n in first.column("n_tokens").to_pylist())
    assert len(set(first.column("text").to_pylist())) > 1
