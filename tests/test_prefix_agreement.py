"""Prefix-shared scoring gives the naive scores, on both backends, in float32.

8 candidate prompts x 32 BBH examples, plus the cases where sharing could go wrong: a prompt
whose prefix is shorter than one cache block, a (prompt, example) pair scored twice in one
call, two examples whose inputs share a long opening, and a multiple-choice example with 5
options (its answers share a whole context).
"""

import numpy as np
import pyarrow as pa
import pytest

from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example import Example
from tests.conftest import bbh_examples

pytestmark = pytest.mark.engine

LONG_RULES = " ".join(
    f"Rule {i}: read the whole question, keep track of every fact, and answer in the format "
    "the question asks for."
    for i in range(6)
)
PROMPTS = [
    ("tiny", "Hi."),  # with the template, shorter than one 32-token cache block
    ("empty", ""),
    ("step", "Let's think step by step."),
    ("final", "Answer with the final answer only."),
    ("careful", "Read the question carefully, then answer it exactly."),
    ("expert", "You are an expert puzzle solver. " + LONG_RULES),
    ("format", "Give only the answer, with no explanation. " + LONG_RULES[:300]),
    ("rules", LONG_RULES),
]
OPENING = "A long shared story about a walk through a city with many turns and stops. " * 4


def agreement_requests():
    examples = bbh_examples("navigate", 11) + bbh_examples("sports_understanding", 11)
    examples += bbh_examples("object_counting", 10)
    examples.append(Example("open-1", OPENING + "Did they stop?", "Yes"))
    examples.append(Example("open-2", OPENING + "Did they turn?", "No"))
    options = ("(A)", "(B)", "(C)", "(D)", "(E)")
    examples.append(
        Example("five", "Which letter comes first? Options: A B C D E", "(A)", options[1:])
    )
    table = score_requests(
        PROMPTS, examples, task_id="t", kind="candidate", role="system", with_rejected=True
    )
    # The same (prompt, example) pair twice in one call: a cache hit reaching into the answer.
    twice = table.slice(3, 1).set_column(0, "request_id", pa.array([table.num_rows], pa.int64()))
    return pa.concat_tables([table, twice])


@pytest.fixture(scope="module")
def requests():
    table = agreement_requests()
    assert table.num_rows >= 8 * 32
    return table


@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_shared_and_naive_scores_agree_per_token(request, requests, backend):
    engine = request.getfixturevalue(f"{backend}_engine")
    naive = engine.score(requests, with_token_logprobs=True, share_prefixes=False)
    if backend == "vllm":  # the naive pass filled the cache too: share from a cold one
        engine.llm.reset_prefix_cache()
    shared = engine.score(requests, with_token_logprobs=True, share_prefixes=True)
    assert shared.column("request_id").to_pylist() == requests.column("request_id").to_pylist()
    for a, b in zip(naive.to_pylist(), shared.to_pylist()):
        where = f"{backend} {a['candidate_id']}/{a['example_id']} ({a['continuation']!r})"
        assert a["n_tokens"] == b["n_tokens"], where
        assert np.allclose(a["token_logprobs"], b["token_logprobs"], atol=1e-3, rtol=0), where
        assert a["is_greedy"] == b["is_greedy"], where
    computed_naive = sum(naive.column("n_computed_tokens").to_pylist())
    computed_shared = sum(shared.column("n_computed_tokens").to_pylist())
    assert computed_naive == sum(naive.column("n_input_tokens").to_pylist())
    # The shared path really shares: well under the naive count on this table.
    assert computed_shared < 0.7 * computed_naive, (computed_shared, computed_naive)
