"""The shared base of the backends: an engine call in two halves, `prepare_*` (CPU work:
validation, rendering, tokenizing, window checks) and `run` (the engine's work and the result
table), plus everything else of the engine contract (engines/engine.py) that does not depend on
the model.

A replica prepares its next batch while the engine runs the current one, so the preparation
stays off the engine's critical path. Every error that names a row is raised by `prepare_*`;
`score(...)` and `generate(...)` are `run(prepare_*(...))`, so results do not depend on the
split. The backends share this and differ only in how they compute token scores and samples.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pyarrow as pa

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.chat import TemplateFrames
from pmpo_ray.engines.generation import (
    PreparedGeneration,
    Sample,
    generation_rows,
    prepare_generation,
)
from pmpo_ray.engines.scoring import PreparedScoring, TokenScores, prepare_scoring, run_scoring
from pmpo_ray.engines.tokenization import EncodedRequest, count_tokens


class PreparedEngine:
    """The engine contract (engines/engine.py) written once: a backend subclasses this, sets
    `config_class`, loads its model in `__init__` (after `super().__init__`: `tokenizer` and
    `model_path`), and supplies `token_scores` and `generate_samples`; a backend holding
    anything outside this process also overrides `close` (and `engine_died`)."""

    config_class: type[EngineSettings]
    tokenizer: object
    model_path: str

    def __init__(self, config: EngineSettings, prompt_format: PromptFormat | None = None):
        self.config = config
        self.prompt_format = prompt_format or PromptFormat()
        self.template_frames: TemplateFrames | None = TemplateFrames()  # kept across batches

    # ----- what the backend supplies -----------------------------------------------------

    def token_scores(self, batch: Sequence[EncodedRequest], share: bool) -> list[TokenScores]:
        """Each row's continuation logprobs, greedy flags and computed tokens; `share`: a
        prefix that several rows of the batch share may be computed once."""
        raise NotImplementedError

    def generate_samples(self, prepared: PreparedGeneration) -> list[list[Sample]]:
        """Each request's `n` samples: (text, generated tokens, finish reason)."""
        raise NotImplementedError

    # ----- the contract, written once ----------------------------------------------------

    def prepare_score(
        self,
        requests: pa.Table,
        with_token_logprobs: bool = False,
        *,
        share_prefixes: bool | None = None,
    ) -> PreparedScoring:
        """A scoring call's CPU work, no model needed: what a replica does while its engine
        runs another batch. `share_prefixes` None: the config's prefix_sharing."""
        share = self.config.prefix_sharing if share_prefixes is None else share_prefixes
        return prepare_scoring(
            requests,
            tokenizer=self.tokenizer,
            max_len=self.config.model.max_model_len,
            truncate_left=self.prompt_format.truncate_left,
            with_token_logprobs=with_token_logprobs,
            share_prefixes=share,
            frames=self.template_frames,
        )

    def prepare_generate(self, requests: pa.Table) -> PreparedGeneration:
        """A generation call's CPU work (rendering, tokenizing, the window check)."""
        max_len = self.config.model.max_model_len
        return prepare_generation(requests, self.tokenizer, max_len, self.template_frames)

    def run(self, prepared: PreparedScoring | PreparedGeneration) -> pa.Table:
        """The engine's work on a prepared call, and its result table."""
        if isinstance(prepared, PreparedScoring):
            return run_scoring(
                prepared,
                token_scorer=partial(self.token_scores, share=prepared.share_prefixes),
                max_batch_tokens=self.config.max_batch_tokens,
            )
        samples = self.generate_samples(prepared)
        prompt_lengths = [len(ids) for ids in prepared.token_ids]
        return generation_rows(prepared.table, samples, prompt_lengths)

    def score(
        self,
        requests: pa.Table,
        with_token_logprobs: bool = False,
        *,
        share_prefixes: bool | None = None,
    ) -> pa.Table:
        """Score every row; `share_prefixes` (default: the config's prefix_sharing) says
        whether a prefix shared by several rows is computed once."""
        return self.run(
            self.prepare_score(requests, with_token_logprobs, share_prefixes=share_prefixes)
        )

    def generate(self, requests: pa.Table) -> pa.Table:
        return self.run(self.prepare_generate(requests))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_tokens(self.tokenizer, texts)

    def engine_died(self, error: BaseException) -> bool:
        """An engine that lives in this process dies with it: an error never means that."""
        return False

    def close(self) -> None:
        """Nothing runs outside this process."""
