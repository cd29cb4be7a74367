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
backends (`prepared_calls.prepare_call`, `scoring.run_scoring` and `generation_rows`), so
tables, window checks, batching and prefix sharing behave as theirs do. Each call's modeled time
starts when it runs: its preparation (`prepare`: rendering, tokenizing) is CPU work outside the
engine, as on a real replica.

Log-probabilities and texts depend on the request alone (never on the replica, the batch or
the order; only computed-token counts depend on the batch, as with a real prefix cache), and
are shaped like a cooperative model's, so the optimizer does a real round's work:
- scoring: each continuation token's log-probability is a function of the whole context
  (template, prompt, input) and the token, so different prompts, and a prompt with a unit
  masked, get different losses;
- a segmentation request (pmpo/masking.py) is answered with the prompt's sentences, verbatim,
  each wrapped in <mask></mask>;
- a rewrite request (pmpo/rewrite.py, either meta-prompt) with the current prompt with one
  sentence replaced, added or dropped (drawn from the seed and sample index), inside
  <prompt></prompt>: it passes vetting unless it repeats an earlier prompt, which happens now
  and then, as with a real model;
- any other generation (held-out answers) with a short sentence.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import zlib
from typing import ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.chat import TemplateFrames
from pmpo_ray.engines.generation import PreparedGeneration, Sample, generation_rows
from pmpo_ray.engines.prefix_sharing import common_prefix
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.scoring import PreparedScoring, TokenScores, run_scoring
from pmpo_ray.engines.tokenization import EncodedRequest
from pmpo_ray.pmpo.masking import sentence_spans
from pmpo_ray.pmpo.rewrite import META_PROMPTS

_WORD = re.compile(r"\S+")
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")
# Mirrors masking.segmentation_request (tests/test_simulated_engine.py checks the round trip).
_SEGMENTATION = re.compile(r"Wrap at most (\d+) parts.*\n###\n(.*)\n###\nOutput:\Z", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SENTENCES = 6  # rewrites stay about as long as the prompt they start from
OPENERS = ("Read", "Check", "Reason about", "Compare", "Restate", "Weigh", "Trace", "Quote")
OBJECTS = ("the question", "each option", "every step", "the facts", "the last line", "the goal")
MANNERS = ("carefully", "step by step", "before answering", "twice", "in order", "briefly")


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
    # Read by replica_memory (no weights, a small process) and replicas (no torch threads).
    loads_model: ClassVar[bool] = False


class WordTokenizer:
    """The part of a Hugging Face tokenizer the shared scoring and generation code calls, over
    whitespace words; a word's id is its CRC-32, so every replica gives the same ids."""

    def __call__(self, text, add_special_tokens: bool = False, return_offsets_mapping=False):
        if not isinstance(text, str):  # a batch: each field becomes a list over the texts
            encodings = [self(one, return_offsets_mapping=return_offsets_mapping) for one in text]
            names = ["input_ids"] + ["offset_mapping"] * return_offsets_mapping
            return {name: [encoding[name] for encoding in encodings] for name in names}
        words = list(_WORD.finditer(text))
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
        self.config = config
        self.prompt_format = prompt_format or PromptFormat()
        self.tokenizer = WordTokenizer()
        self.template_frames = TemplateFrames()  # kept across batches

    def close(self) -> None:
        """Nothing to release."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(text)) for text in texts]

    def run(self, prepared: PreparedScoring | PreparedGeneration) -> pa.Table:
        if isinstance(prepared, PreparedScoring):
            return self._run_scoring(prepared)
        return self._run_generation(prepared)

    def _run_scoring(self, prepared: PreparedScoring) -> pa.Table:
        started = time.perf_counter()
        share = prepared.share_prefixes
        scored = run_scoring(
            prepared,
            token_scorer=lambda batch: simulated_scores(batch, share),
            max_batch_tokens=self.config.max_batch_tokens,
        )
        read = pc.sum(scored.column("n_computed_tokens")).as_py() or 0
        self._take_modeled_time(started, read_tokens=read, generated_tokens=0)
        return scored

    def _run_generation(self, prepared: PreparedGeneration) -> pa.Table:
        started = time.perf_counter()
        requests, token_ids = prepared.table, prepared.token_ids
        max_len = self.config.model.max_model_len
        samples = [
            [simulated_sample(row, index, max_len - len(ids)) for index in range(row["n"])]
            for ids, row in zip(token_ids, requests.to_pylist())
        ]
        generated = sum(n_tokens for row in samples for _, n_tokens, _ in row)
        read = sum(len(ids) for ids in token_ids)
        self._take_modeled_time(started, read_tokens=read, generated_tokens=generated)
        return generation_rows(requests, samples, token_ids)

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


def simulated_sample(row: dict, index: int, room: int) -> Sample:
    """Sample `index` of a generation request: (text, tokens, finish reason); an answer longer
    than `max_tokens` (or the window's room) is cut there, as an engine cuts it."""
    text = simulated_text(row, index)
    words = _WORD.findall(text)
    limit = min(row["max_tokens"], room)
    if len(words) <= limit:
        return text, len(words), "stop"
    return " ".join(words[:limit]), limit, "length"


def simulated_text(row: dict, index: int) -> str:
    """What a cooperative model would answer to this request (see the module's docstring)."""
    rng = random.Random(request_key(row, index))
    user_input = row["input"]
    segmentation = _SEGMENTATION.search(user_input)
    if segmentation is not None:
        prompt, max_units = segmentation.group(2), int(segmentation.group(1))
        units = [prompt[start:end] for start, end in sentence_spans(prompt, max_units)]
        return " ".join(f"<mask>{unit}</mask>" for unit in units)
    current = current_prompt(user_input)
    if current is not None:
        rewritten = varied_prompt(current, rng)
        if "<prompt>" in (row.get("prefill") or ""):  # the answer already opened the tag
            return f"{rewritten}</prompt>"
        return f"The prompt leaves the answer's form implicit. <prompt>{rewritten}</prompt>"
    return f"The answer is {rng.choice(('yes', 'no', '(A)', '(B)', 'valid', '42'))}."


def request_key(row: dict, index: int) -> int:
    """A stable integer of the request's content, seed and sample index (Python's hash() is
    salted per process; replicas must agree)."""
    parts = [str(row.get(name) or "") for name in ("prompt", "role", "input", "prefill", "seed")]
    digest = hashlib.blake2b("\x1f".join([*parts, str(index)]).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _meta_prompt_pattern(template: str) -> re.Pattern:
    """A meta-prompt template as a regex capturing its current prompt."""
    pieces = re.split(r"\{(\w+)\}", template)  # literal, field, literal, field, ...
    fields = {"current_prompt": "(?P<current>.*?)"}  # every other field: anything
    regex = "".join(
        re.escape(piece) if i % 2 == 0 else fields.get(piece, ".*?")
        for i, piece in enumerate(pieces)
    )
    return re.compile(regex + r"\Z", re.DOTALL)


_META_PROMPTS = [_meta_prompt_pattern(template) for template in META_PROMPTS.values()]


def current_prompt(user_input: str) -> str | None:
    """The prompt a rewrite request asks to improve; None for another request."""
    for pattern in _META_PROMPTS:
        match = pattern.match(user_input)
        if match is not None:
            return match.group("current")
    return None


def varied_prompt(current: str, rng: random.Random) -> str:
    """`current` with one sentence replaced, added or dropped, its length kept within
    MAX_SENTENCES."""
    sentences = [s for s in _SENTENCE_END.split(current.strip()) if s]
    new = f"{rng.choice(OPENERS)} {rng.choice(OBJECTS)} {rng.choice(MANNERS)}."
    moves = ["replace"] * bool(sentences)
    moves += ["add"] * (len(sentences) < MAX_SENTENCES) + ["drop"] * (len(sentences) > 1)
    move, at = rng.choice(moves), rng.randrange(len(sentences) + 1)
    if move == "replace":
        sentences[at % len(sentences)] = new
    elif move == "add":
        sentences.insert(at, new)
    else:
        del sentences[at % len(sentences)]
    return " ".join(sentences)
