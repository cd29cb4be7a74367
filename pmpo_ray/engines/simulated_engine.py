"""simulated backend: replicas that take an engine's time but load no model, for capacity planning.

With `backend: simulated` a suite runs exactly as it would on real engines (the driver, the
Ray Data jobs, replica actors and their dispatchers, checkpoints) while each engine call only
lasts as long as a linear cost model says: `seconds_per_call` plus `seconds_per_scored_token`
per token read (a scoring row's computed tokens, a generation's prompt) plus
`seconds_per_generated_token` per token written. So you can measure what the driver and Ray
add to a suite's rounds on your own cluster, for your task count and pool sizes, before
loading any model: round time minus the engines' modeled seconds is overhead
(`python -m pipelines.bench_scale --grid` does this). A call that did its bookkeeping faster than
modeled sleeps the rest, so replicas are busy for the modeled time on any machine.

Tokens are whitespace-separated words (a word's id is its CRC-32, the same in every replica),
so nothing is downloaded and neither torch nor vLLM is imported. The chat template is a plain
one of this file's own. Scoring and generation go through the same shared code as the real
backends (`prepared_calls.PreparedEngine`: `scoring.run_scoring` and `generation_rows`), so
tables, window checks, batching and prefix sharing behave as theirs do. Each call's modeled time
starts when it runs: its preparation (`prepare_*`: rendering, tokenizing) is CPU work outside
the engine, as on a real replica.

Log-probabilities and texts depend on the request alone (never on the replica, the batch or
the order; only computed-token counts depend on the batch, as with a real prefix cache), and
are shaped like a cooperative model's, so the optimizer does a real round's work:
- scoring: each continuation token's log-probability is a function of the whole context
  (template, prompt, input) and the token, so different prompts, and a prompt with a unit
  masked, get different losses;
- generation: segmentations, rewrites and answers a cooperative model would write
  (engines/simulated_answers.py).
"""

from __future__ import annotations

import re
import time
import zlib
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.generation import PreparedGeneration, Sample
from pmpo_ray.engines.prefix_sharing import common_prefix
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.scoring import PreparedScoring, TokenScores
from pmpo_ray.engines.simulated_answers import WORD, simulated_sample
from pmpo_ray.engines.tokenization import EncodedRequest

_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")


class SimulatedConfig(EngineSettings):
    backend: Literal["simulated"] = Field(
        "simulated",
        description="No model: calls take the modeled time and answer deterministically "
        "(capacity planning: a suite's driver and Ray overhead on your cluster).",
    )
    seconds_per_call: float = Field(
        0.005, ge=0, description="Fixed cost of every engine call (launching a batch)."
    )
    seconds_per_scored_token: float = Field(
        2e-5,
        ge=0,
        description="Cost of each token an engine reads: a scoring row's computed tokens "
        "(less with prefix sharing) and a generation request's prompt. Set it from your "
        "engine's measured prefill throughput (2e-5: 50k tokens/s).",
    )
    seconds_per_generated_token: float = Field(
        5e-4,
        ge=0,
        description="Cost of each generated token, at the engine's batched decode throughput "
        "(5e-4: 2,000 tokens/s).",
    )

    @property
    def loads_model(self) -> bool:
        """No weights and no torch: a small replica, and no window to check rows against."""
        return False


class WordTokenizer:
    """The part of a Hugging Face tokenizer the shared scoring and generation code calls, over
    whitespace words; a word's id is its CRC-32, so every replica gives the same ids."""

    def __call__(self, text, add_special_tokens: bool = False, return_offsets_mapping=False):
        if not isinstance(text, str):  # a batch: each field becomes a list over the texts
            encodings = [self(one, return_offsets_mapping=return_offsets_mapping) for one in text]
            names = ["input_ids"] + ["offset_mapping"] * return_offsets_mapping
            return {name: [encoding[name] for encoding in encodings] for name in names}
        words = list(WORD.finditer(text))
        encoding = {"input_ids": [zlib.crc32(word.group().encode()) for word in words]}
        if return_offsets_mapping:
            encoding["offset_mapping"] = [word.span() for word in words]
        return encoding

    def last_cut(self, text: str) -> tuple[int, str] | None:
        """Where `text` can be cut last with its words unchanged: after its last whitespace
        (engines/batch_tokenization.py tokenizes the pieces of a row apart)."""
        match = _LAST_SPACE.search(text)
        return None if match is None else (match.end(), "")

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True) -> str:
        text = "".join(f"<{message['role']}>\n{message['content']}\n" for message in messages)
        return text + ("<assistant>\n" if add_generation_prompt else "")


class SimulatedEngine(PreparedEngine):
    """An engine that takes the modeled time and returns deterministic outputs (see above)."""

    config_class = SimulatedConfig
    model_path = "simulated (no model)"

    def __init__(self, config: SimulatedConfig, prompt_format: PromptFormat | None = None):
        super().__init__(config, prompt_format)
        self.tokenizer = WordTokenizer()

    def token_scores(self, batch: Sequence[EncodedRequest], share: bool) -> list[TokenScores]:
        return simulated_scores(batch, share)

    def generate_samples(self, prepared: PreparedGeneration) -> list[list[Sample]]:
        max_len = self.config.model.max_model_len
        return [
            [simulated_sample(row, index, max_len - len(ids)) for index in range(row["n"])]
            for ids, row in zip(prepared.token_ids, prepared.table.to_pylist())
        ]

    def run(self, prepared: PreparedScoring | PreparedGeneration) -> pa.Table:
        """The shared run, lasting the modeled time of the tokens it read and wrote."""
        started = time.perf_counter()
        result = super().run(prepared)
        if isinstance(prepared, PreparedScoring):
            read, generated = pc.sum(result.column("n_computed_tokens")).as_py() or 0, 0
        else:
            read = sum(len(ids) for ids in prepared.token_ids)
            generated = pc.sum(result.column("n_tokens")).as_py() or 0
        self._take_modeled_time(started, read_tokens=read, generated_tokens=generated)
        return result

    def modeled_seconds(self, read_tokens: int, generated_tokens: int) -> float:
        """What one call reading and writing these many tokens costs under the cost model."""
        config = self.config
        return (
            config.seconds_per_call
            + read_tokens * config.seconds_per_scored_token
            + generated_tokens * config.seconds_per_generated_token
        )

    def _take_modeled_time(self, started: float, read_tokens: int, generated_tokens: int) -> None:
        # Sleep out what the bookkeeping left of the modeled time: a replica is busy for the
        # model's time whatever this machine's speed (unless bookkeeping alone takes longer).
        deadline = started + self.modeled_seconds(read_tokens, generated_tokens)
        time.sleep(max(0.0, deadline - time.perf_counter()))


def token_level(token_id: int, salt: int = 0) -> float:
    """A token's pseudo-random level in [0, 1), from its id (and a salt)."""
    return ((token_id ^ (salt * 2654435761)) % 1009) / 1009


def simulated_scores(batch: Sequence[EncodedRequest], share: bool) -> list[TokenScores]:
    """Log-probabilities from the context's mean token level and each continuation token's:
    a prompt with lower-level words lowers every example's loss, as a better prompt would.
    With `share`, a row computes only what it does not share with the row before it (batches
    come in token order, so that is what a prefix cache saves)."""
    results, previous = [], ()
    for request in batch:
        context = request.token_ids[: request.n_context]
        context_level = sum(token_level(i) for i in context) / len(context)
        continuation = request.token_ids[request.n_context :]
        logprobs = np.array(
            [-(0.05 + 3.0 * context_level * token_level(t, k)) for k, t in enumerate(continuation)]
        )
        shared = min(common_prefix(previous, request.token_ids), request.n_context - 1)
        computed = len(request.token_ids) - (shared if share else 0)
        results.append(TokenScores(logprobs, logprobs > -0.5, computed))
        previous = request.token_ids
    return results
