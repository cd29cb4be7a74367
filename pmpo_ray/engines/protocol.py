"""The two calls the optimizer needs from a model, over Arrow tables.

Backends (vLLM, transformers), replica pools and the test fakes all implement these, so the
optimizer never knows which one it drives.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyarrow as pa


@runtime_checkable
class Scorer(Protocol):
    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        """SCORE_REQUEST_SCHEMA rows in, the same rows plus logprob_sum, n_tokens, is_greedy."""


@runtime_checkable
class Generator(Protocol):
    def generate(self, requests: pa.Table) -> pa.Table:
        """GENERATE_REQUEST_SCHEMA rows in, GENERATE_RESULT_SCHEMA rows out (n per request)."""
