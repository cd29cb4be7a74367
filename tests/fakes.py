"""Stand-ins at protocol boundaries, for unit tests of pure logic only."""

from __future__ import annotations

import numpy as np

from pmpo_ray.engines.tokenization import EncodedRequest


def token_value(token_id: int, position: int) -> float:
    """A made-up but deterministic log-probability for a token at a position."""
    return -((token_id * 31 + position * 7) % 97) / 10.0


class FakeTokenScorer:
    """Implements the TokenScorer callable; records the batches it saw."""

    def __init__(self, drop_last: bool = False):
        self.batches: list[list[EncodedRequest]] = []
        self.drop_last = drop_last

    def __call__(self, batch):
        self.batches.append(list(batch))
        results = []
        for request in batch:
            positions = range(request.n_context, len(request.token_ids))
            logprobs = np.array([token_value(request.token_ids[p], p) for p in positions])
            results.append((logprobs, logprobs > -1.0))
        return results[:-1] if self.drop_last else results
