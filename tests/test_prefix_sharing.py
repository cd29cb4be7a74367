"""Grouping scoring rows by shared token prefixes: pure logic, no engine."""

import random

from pmpo_ray.engines.prefix_sharing import (
    common_prefix,
    prefix_groups,
    prefix_ordered_batches,
)
from pmpo_ray.engines.tokenization import EncodedRequest

PROMPT_A = tuple(range(100, 140))  # a 40-token "template + candidate prompt"
PROMPT_B = tuple(range(200, 240))


def row(index, prefix, example, answer, answer_len=2):
    """prefix + 6 example tokens | answer tokens; n_context ends after the example."""
    context = prefix + tuple(1000 + 10 * example + k for k in range(6))
    continuation = tuple(5000 + 10 * answer + k for k in range(answer_len))
    return EncodedRequest(row=index, token_ids=context + continuation, n_context=len(context))


def supervised_rows():
    rows = [row(0, PROMPT_A, e, e) for e in range(4)]
    rows += [row(0, PROMPT_B, e, e) for e in range(4)]
    return [EncodedRequest(i, r.token_ids, r.n_context) for i, r in enumerate(rows)]


def multiple_choice_rows(options=5):
    rows = [row(0, PROMPT_A, e, o) for e in range(3) for o in range(options)]
    return [EncodedRequest(i, r.token_ids, r.n_context) for i, r in enumerate(rows)]


def test_common_prefix():
    assert common_prefix((1, 2, 3), (1, 2, 4)) == 2
    assert common_prefix((1, 2), (1, 2, 3)) == 2
    assert common_prefix((), (1,)) == 0


def test_prefix_ordered_batches_keep_prompts_together_within_budget():
    rows = supervised_rows()
    random.Random(1).shuffle(rows)
    batches = prefix_ordered_batches(rows, max_batch_tokens=4 * 48)
    assert sorted(r.row for b in batches for r in b) == list(range(8))
    assert all(sum(len(r.token_ids) for r in b) <= 4 * 48 for b in batches)
    for batch in batches:  # each batch holds one candidate prompt's rows
        assert len({r.token_ids[:40] for r in batch}) == 1


def test_a_row_over_budget_is_a_batch_of_its_own():
    rows = supervised_rows()
    assert [len(b) for b in prefix_ordered_batches(rows, max_batch_tokens=10)] == [1] * 8


def test_prefix_groups_cap_before_the_first_continuation_token():
    rows = multiple_choice_rows(options=2)
    groups = prefix_groups(rows, min_shared=16)
    assert len(groups) == 1
    shared, members = groups[0]
    assert sorted(members) == list(range(6))
    assert shared == 40  # the prompt; examples differ after it
    same_context = [rows[0], EncodedRequest(1, rows[1].token_ids, rows[1].n_context)]
    [(shared, _)] = prefix_groups(same_context, min_shared=16)
    assert shared == rows[0].n_context - 1  # identical contexts: stop one token short


def test_prefix_groups_leave_unrelated_rows_unshared():
    rows = supervised_rows()
    groups = prefix_groups(rows, min_shared=16)
    assert sorted(len(m) for _, m in groups) == [4, 4]
    assert prefix_groups(rows, min_shared=41) == [
        (0, [i]) for i in sorted(range(8), key=lambda i: rows[i].token_ids)
    ]


def test_a_common_header_does_not_merge_candidates_into_one_group():
    """Every chat row opens with the same template header; grouping must still give each
    candidate its own group, sharing header and prompt (a greedy run would share the header
    only, across all rows)."""
    header = tuple(range(20))
    rows = [row(0, header + PROMPT_A, e, e) for e in range(4)]
    rows += [row(0, header + PROMPT_B, e, e) for e in range(4)]
    rows = [EncodedRequest(i, r.token_ids, r.n_context) for i, r in enumerate(rows)]
    groups = prefix_groups(rows, min_shared=16)
    assert sorted((shared, sorted(members)) for shared, members in groups) == [
        (60, [0, 1, 2, 3]),
        (60, [4, 5, 6, 7]),
    ]
