"""An engine call in two halves: `prepare` (CPU work: validation, rendering, tokenizing, window
checks) and `run` (the engine's work and the result table).

A replica prepares its next batch while the engine runs the current one, so the preparation
stays off the engine's critical path. Every error that names a row is raised by `prepare`;
`score(...)` and `generate(...)` are `run(prepare(...))`, so results do not depend on the split.
The backends share this dispatch and differ only in how they run.
"""

from __future__ import annotations

import pyarrow as pa

from pmpo_ray.engines.generation import PreparedGeneration, prepare_generation
from pmpo_ray.engines.scoring import PreparedScoring, prepare_scoring

METHODS = ("score", "generate")


def prepare_call(
    engine, method: str, requests: pa.Table, *args, **kwargs
) -> PreparedScoring | PreparedGeneration:
    """`engine.prepare`: `method` is "score" (then `with_token_logprobs=False, *,
    share_prefixes=None`, as in `score`) or "generate". The engine provides `tokenizer`,
    `config` (an EngineSettings) and `prompt_format`, and may keep `template_frames`
    (chat.TemplateFrames) across its batches."""
    max_len = engine.config.model.max_model_len
    if method == "generate":
        frames = getattr(engine, "template_frames", None)
        return prepare_generation(requests, engine.tokenizer, max_len, frames, *args, **kwargs)
    if method != "score":
        raise ValueError(f"an engine prepares one of {', '.join(METHODS)}; got {method!r}")
    return _prepare_score(engine, requests, *args, **kwargs)


def _prepare_score(
    engine,
    requests: pa.Table,
    with_token_logprobs: bool = False,
    *,
    share_prefixes: bool | None = None,
) -> PreparedScoring:
    """`share_prefixes` None: the engine config's prefix_sharing."""
    share = engine.config.prefix_sharing if share_prefixes is None else share_prefixes
    return prepare_scoring(
        requests,
        tokenizer=engine.tokenizer,
        max_len=engine.config.model.max_model_len,
        truncate_left=engine.prompt_format.truncate_left,
        with_token_logprobs=with_token_logprobs,
        share_prefixes=share,
        frames=getattr(engine, "template_frames", None),
    )


class PreparedEngine:
    """`score`, `generate` and `prepare` written once for backends that only supply `run`
    (and `tokenizer`, `config`, `prompt_format`): every call is `run(prepare(...))`."""

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
            self.prepare("score", requests, with_token_logprobs, share_prefixes=share_prefixes)
        )

    def generate(self, requests: pa.Table) -> pa.Table:
        return self.run(self.prepare("generate", requests))

    def prepare(self, method: str, requests: pa.Table, *args, **kwargs):
        """A call's CPU work, no model needed: what a replica does while its engine runs
        another batch."""
        return prepare_call(self, method, requests, *args, **kwargs)

    def run(self, prepared: PreparedScoring | PreparedGeneration) -> pa.Table:
        raise NotImplementedError
