import random

import numpy as np
import pyarrow as pa
import pytest

from pmpo_ray.engines.chat import render_rows
from pmpo_ray.engines.scoring import long_first_batches, score_encoded, score_table
from pmpo_ray.engines.tokenization import EncodedRequest, RequestTooLongError
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example import Example
from tests.failures import candidate_requests
from tests.fakes import FakeTokenScorer, token_value


def encoded(lengths):
    return [
        EncodedRequest(row=i, token_ids=tuple(range(n)), n_context=n - 1)
        for i, n in enumerate(lengths)
    ]


def test_batches_are_long_first_within_budget_and_cover_every_row():
    requests = encoded([5, 40, 12, 33, 7, 7, 21])
    batches = long_first_batches(requests, max_batch_tokens=60)
    flat = [r.row for batch in batches for r in batch]
    assert sorted(flat) == list(range(7))
    lengths = [len(r.token_ids) for batch in batches for r in batch]
    assert lengths == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) == 1 or len(batch[0].token_ids) * len(batch) <= 60


@pytest.mark.parametrize("share_prefixes", [False, True], ids=["long-first", "prefix-order"])
def test_results_come_back_in_input_order_exactly_once(share_prefixes):
    lengths = list(range(3, 40))
    random.Random(0).shuffle(lengths)
    requests = encoded(lengths)
    scorer = FakeTokenScorer()
    results = score_encoded(requests, scorer, max_batch_tokens=64, share_prefixes=share_prefixes)
    assert len(scorer.batches) > 1
    for request, (logprobs, _, _) in zip(requests, results):
        expected = [
            token_value(request.token_ids[p], p)
            for p in range(request.n_context, len(request.token_ids))
        ]
        assert logprobs.tolist() == expected


def test_a_backend_that_loses_a_row_is_caught():
    with pytest.raises(RuntimeError, match="returned 1 results for 2"):
        score_encoded(encoded([5, 6]), FakeTokenScorer(drop_last=True), max_batch_tokens=100)


def test_score_table_sums_token_logprobs_and_keeps_request_columns(tokenizer):
    examples = [Example(str(i), f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(6)]
    requests = candidate_requests([("p0", "Add."), ("p1", "")], examples)
    scored = score_table(
        requests,
        tokenizer=tokenizer,
        token_scorer=FakeTokenScorer(),
        max_len=512,
        max_batch_tokens=256,
        with_token_logprobs=True,
    )
    assert scored.column("candidate_id").to_pylist() == ["p0"] * 6 + ["p1"] * 6
    for row in scored.to_pylist():
        assert row["logprob_sum"] == pytest.approx(float(np.sum(row["token_logprobs"])), abs=1e-4)
        assert row["n_tokens"] == len(row["token_logprobs"]) > 0


def test_one_bad_row_fails_the_whole_table_before_scoring(tokenizer):
    examples = [Example("short", "Hi", "yes"), Example("long", "word " * 600, "yes")]
    requests = score_requests([("p", "x")], examples, task_id="nav", kind="adhoc", role="system")
    scorer = FakeTokenScorer()
    with pytest.raises(
        RequestTooLongError,
        match=r"request 1 \(task 'nav', candidate 'p', example 'long'\): \d+ tokens, \d+ over",
    ):
        score_table(
            requests, tokenizer=tokenizer, token_scorer=scorer, max_len=300, max_batch_tokens=1024
        )
    assert scorer.batches == []


def test_missing_column_and_duplicate_ids_are_errors(tokenizer):
    table = pa.table({"request_id": [0], "prompt": [""], "role": ["raw"], "input": ["a"]})
    with pytest.raises(ValueError, match="'continuation' missing"):
        score_table(
            table,
            tokenizer=tokenizer,
            token_scorer=FakeTokenScorer(),
            max_len=10,
            max_batch_tokens=10,
        )
    table = pa.table(
        {
            "request_id": [0, 0],
            "prompt": ["", ""],
            "role": ["raw", "raw"],
            "input": ["a", "b"],
            "continuation": ["c", "d"],
        }
    )
    with pytest.raises(ValueError, match="not unique"):
        score_table(
            table,
            tokenizer=tokenizer,
            token_scorer=FakeTokenScorer(),
            max_len=10,
            max_batch_tokens=10,
        )


def test_user_role_puts_the_prompt_in_the_user_message(tokenizer):
    requests = score_requests(
        [("p", "Be brief.")],
        [Example("0", "Hi", "Hello")],
        task_id="t",
        kind="adhoc",
        role="user",
    )
    [context] = render_rows(requests, tokenizer, "test")
    assert "<|im_start|>user\nBe brief.\n\nHi<|im_end|>" in context
    assert context.endswith("<|im_start|>assistant\n")
