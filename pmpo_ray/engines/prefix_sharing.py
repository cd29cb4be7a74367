"""Which scoring rows share a token prefix, so a backend can compute that prefix once.

Every PMPO round scores each candidate prompt on every training example, and a multiple-choice
or preference example once per answer: the chat template and the candidate prompt open every
row of a candidate, and a whole context opens every answer of an example. Sorting rows by their
token ids puts rows that share a prefix next to each other (the longest common prefix of any two
rows is reached by neighbours in that order), which is all the grouping below needs. Pure
functions over encoded requests, tested without an engine.
"""

from __future__ import annotations

from typing import Sequence

from pmpo_ray.engines.tokenization import EncodedRequest


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    limit = min(len(a), len(b))
    for index in range(limit):
        if a[index] != b[index]:
            return index
    return limit


def prefix_ordered_batches(
    requests: Sequence[EncodedRequest], max_batch_tokens: int
) -> list[list[EncodedRequest]]:
    """Rows in token order, cut into consecutive batches of at most `max_batch_tokens` tokens
    (a row longer than that is a batch of its own), so rows sharing a prefix stay together."""
    ordered = sorted(requests, key=lambda r: r.token_ids)
    batches: list[list[EncodedRequest]] = []
    current: list[EncodedRequest] = []
    tokens = 0
    for request in ordered:
        if current and tokens + len(request.token_ids) > max_batch_tokens:
            batches.append(current)
            current, tokens = [], 0
        current.append(request)
        tokens += len(request.token_ids)
    if current:
        batches.append(current)
    return batches


def prefix_groups(batch: Sequence[EncodedRequest], min_shared: int) -> list[tuple[int, list[int]]]:
    """(shared prefix length, indices) groups covering `batch`, chosen to compute as few prefix
    tokens as possible. A group is a run of neighbours in token order; its shared length is
    their common prefix, capped one token before the earliest continuation (every continuation
    token must be predicted by a position after the prefix), and at least `min_shared`. Rows
    that share less with every neighbour come back as groups of one, shared length 0.

    The split is the best one, found by dynamic programming (a greedy run would let a common
    chat-template header of a few dozen tokens swallow every candidate into one group)."""
    order = sorted(range(len(batch)), key=lambda i: batch[i].token_ids)
    rows = [batch[i] for i in order]
    neighbour = [0] + [common_prefix(a.token_ids, b.token_ids) for a, b in zip(rows, rows[1:])]
    saved = [0] * (len(rows) + 1)  # saved[end]: prefix tokens not recomputed in rows[:end]
    start = [0] * (len(rows) + 1)  # where the last group of rows[:end] begins
    for end in range(1, len(rows) + 1):
        saved[end], start[end] = saved[end - 1], end - 1
        shared = rows[end - 1].n_context - 1
        for first in range(end - 2, -1, -1):
            shared = min(shared, neighbour[first + 1], rows[first].n_context - 1)
            if shared < min_shared:
                break
            if saved[first] + (end - 1 - first) * shared > saved[end]:
                saved[end], start[end] = saved[first] + (end - 1 - first) * shared, first
    groups, end = [], len(rows)
    while end:
        first = start[end]
        shared = min([*neighbour[first + 1 : end], *(r.n_context - 1 for r in rows[first:end])])
        groups.append((shared if end - first > 1 else 0, order[first:end]))
        end = first
    return groups[::-1]
