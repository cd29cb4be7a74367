"""OpenAI-compatible backend: a model behind a server users already run (vLLM's OpenAI
server, Ray Serve LLM, a hosted API), reached over HTTP.

Generation goes through `/v1/chat/completions`: the server renders its own chat template, as
every engine here renders its own. A prefill (the short meta-prompt's opened `<prompt>` tag)
is sent as a final assistant message with vLLM's `continue_final_message`; a server without
it is configured `continue_final_message: false`, and jobs then use the long meta-prompt,
which needs no prefill (jobs.py).

Scoring goes through `/v1/completions` with token-id prompts and `prompt_logprobs`: contexts
are rendered and split from their answers by the served model's own tokenizer, here, exactly as
the in-process engines do, and each answer's logprobs are read from the end of the returned
list. Over HTTP a logprob request cannot skip reading the prefix cache (vLLM 0.32's server
does not expose `skip_reading_prefix_cache`), so each row is sent whole, priced like the
`--no-prefix-sharing` path.

A pool of this backend is client-side concurrency: each replica actor holds no model (no GPU,
no weights in the pool plan) and keeps at most `max_in_flight` requests at the server. The
API key is read from the environment variable `api_key_env` names, in the process that sends
the request; it is never stored, logged or put in an error.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from pmpo_ray.config import EngineSettings, ModelConfig, PromptFormat
from pmpo_ray.engines.chat import chat_messages
from pmpo_ray.engines.generation import (
    PreparedGeneration,
    Sample,
    generation_rows,
    prepare_generation,
)
from pmpo_ray.engines.models import resolve_model_path
from pmpo_ray.engines.openai_http import Endpoint, ServerError, ServerUnavailable, missing_key
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.scoring import PreparedScoring, TokenScores, describe_row
from pmpo_ray.engines.tokenization import EncodedRequest
from pmpo_ray.requests import REQUIRED_GENERATE_COLUMNS, check_columns

log = logging.getLogger(__name__)

# Tokenized by both sides to check that the local tokenizer is the served model's.
PROBE_TEXT = "Probe: Ünïcode, numbers 12345, and <tags>\n  spaces."
CANNOT_SCORE = "this server cannot score; use it as the rewriter only"


class OpenAiConfig(EngineSettings):
    backend: Literal["openai"] = Field(
        "openai", description="A model behind an OpenAI-compatible HTTP server."
    )
    base_url: str = Field(
        ..., description="The server's API root, e.g. http://host:8000/v1 (vLLM, Ray Serve LLM)."
    )
    model: ModelConfig = Field(
        ...,
        description="The served model's name (as /v1/models lists it); a mapping also sets "
        "max_model_len, the window rows are checked against.",
    )
    tokenizer: str | None = Field(
        None,
        description="The served model's tokenizer and chat template: 'default', a local folder "
        "or a cached hub id. Scoring needs it (contexts are split from answers exactly, here); "
        "without it only generation and token counts (the server's /tokenize) work.",
    )
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the API key (the key itself "
        "never goes in a config); it must be set where requests are sent (the replicas: pass "
        "it with the job's runtime_env). None: no key.",
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one answer.")
    max_in_flight: int = Field(
        8,
        ge=1,
        description="Requests each replica (or the driver, in process) keeps at the server.",
    )
    retries: int = Field(
        6, ge=0, description="Retries of a request after a 429, 5xx, timeout or connection error."
    )
    retry_deadline_s: float = Field(
        120.0,
        gt=0,
        description="Give up retrying a request after this long (backoff doubles from 0.5 s, "
        "at most 10 s between tries); the run then stops and --resume continues.",
    )
    continue_final_message: bool = Field(
        True,
        description="The server continues a final assistant message (vLLM's "
        "continue_final_message), so a prefill works; false for hosted APIs: jobs then use "
        "the long meta-prompt, which needs none.",
    )

    @field_validator("model", mode="before")
    @classmethod
    def model_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("base_url")
    @classmethod
    def http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://; got {value!r}")
        return value.rstrip("/")

    @property
    def loads_model(self) -> bool:
        return False  # the server holds the model; a replica holds an HTTP client

    @property
    def prefills(self) -> bool:
        return self.continue_final_message

    def preflight(self, role: str) -> None:
        check_server(self, role)


class OpenAiEngine(PreparedEngine):
    """A client of one served model (engines/engine.py: the contract)."""

    config_class = OpenAiConfig

    def __init__(self, config: OpenAiConfig, prompt_format: PromptFormat | None = None):
        super().__init__(config, prompt_format)
        self.endpoint = Endpoint(config)
        self.model_path = f"{config.model.name} at {config.base_url}"
        self.tokenizer = load_tokenizer(config) if config.tokenizer else None
        self.requests = ThreadPoolExecutor(config.max_in_flight, "pmpo-openai")

    def close(self) -> None:
        self.requests.shutdown(wait=False, cancel_futures=True)

    # ----- scoring -------------------------------------------------------------------------

    def prepare_score(self, requests, with_token_logprobs=False, *, share_prefixes=None):
        if self.tokenizer is None:
            raise ValueError(scoring_needs_tokenizer(self.config))
        return super().prepare_score(requests, with_token_logprobs, share_prefixes=False)

    def token_scores(self, batch: Sequence[EncodedRequest], share: bool) -> list[TokenScores]:
        return list(self.requests.map(self._score_row, batch))

    def _score_row(self, request: EncodedRequest) -> TokenScores:
        answer = self.endpoint.call("/completions", logprob_body(self.config, request.token_ids))
        entries = answer["choices"][0].get("prompt_logprobs")
        if not entries:
            raise ServerError(f"{self.config.base_url}: {CANNOT_SCORE}")
        return continuation_scores(request, entries)

    # ----- generation ----------------------------------------------------------------------

    def prepare_generate(self, requests: pa.Table) -> PreparedGeneration:
        if self.tokenizer is not None:  # the window is checked here, as in process
            return prepare_generation(
                requests, self.tokenizer, self.config.model.max_model_len, self.template_frames
            )
        check_columns(requests, REQUIRED_GENERATE_COLUMNS, "generate requests")
        return PreparedGeneration(requests, ())

    def run(self, prepared: PreparedScoring | PreparedGeneration) -> pa.Table:
        if isinstance(prepared, PreparedScoring):
            return super().run(prepared)
        rows = prepared.table.to_pylist()
        answers = list(self.requests.map(self._generate_row, range(len(rows)), rows))
        samples = [samples for samples, _ in answers]
        prompt_lengths = [length for _, length in answers]
        return generation_rows(prepared.table, samples, prompt_lengths)

    def generate_samples(self, prepared: PreparedGeneration) -> list[list[Sample]]:
        rows = prepared.table.to_pylist()
        return [self._generate_row(index, row)[0] for index, row in enumerate(rows)]

    def _generate_row(self, index: int, row: dict) -> tuple[list[Sample], int]:
        """One request's samples and its prompt's length in tokens (the server's count)."""
        prefill = row.get("prefill") or ""
        sampling = {
            "model": self.config.model.name,
            "n": row["n"],
            "temperature": row["temperature"],
            "top_p": row["top_p"],
            "max_tokens": row["max_tokens"],
            "seed": row["seed"],
        }
        if row["role"] == "raw":  # no template: the text continues as it is
            text = row["prompt"] + row["input"] + prefill
            answer = self.endpoint.call("/completions", {**sampling, "prompt": text})
            texts = [choice["text"] for choice in answer["choices"]]
        else:
            if prefill and not self.config.continue_final_message:
                raise ValueError(
                    f"{describe_row(pa.Table.from_pylist([row]), 0)}: has a prefill, and "
                    f"engine.continue_final_message is false (this server cannot continue one)"
                )
            body = {**sampling, "messages": chat_messages(row["prompt"], row["input"], row["role"])}
            if prefill:
                body["messages"].append({"role": "assistant", "content": prefill})
                body.update(add_generation_prompt=False, continue_final_message=True)
            answer = self.endpoint.call("/chat/completions", body)
            texts = [choice["message"]["content"] or "" for choice in answer["choices"]]
        finishes = [choice.get("finish_reason") or "" for choice in answer["choices"]]
        usage = answer.get("usage") or {}
        counts = self._sample_tokens(texts, usage.get("completion_tokens"))
        return list(zip(texts, counts, finishes)), int(usage.get("prompt_tokens") or 0)

    def _sample_tokens(self, texts: list[str], total: int | None) -> list[int]:
        """Each sample's generated tokens: counted by the tokenizer when there is one, else the
        server's total shared out by text length (the total, what work reports, is exact)."""
        if self.tokenizer is not None or total is None:
            return self.count_tokens(texts)
        weights = np.array([max(1, len(text)) for text in texts], dtype=float)
        counts = np.floor(total * weights / weights.sum()).astype(int)
        counts[: total - counts.sum()] += 1
        return counts.tolist()

    # ----- tokens --------------------------------------------------------------------------

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self.tokenizer is not None:
            return super().count_tokens(texts)
        return list(self.requests.map(self._server_count, texts))

    def _server_count(self, text: str) -> int:
        body = {"model": self.config.model.name, "prompt": text, "add_special_tokens": False}
        return len(self.endpoint.call("/tokenize", body, at_root=True)["tokens"])


def logprob_body(config: OpenAiConfig, token_ids: Sequence[int]) -> dict:
    """A completions request that computes every prompt token's logprob (and its rank: rank 1
    is the greedy choice) and generates the one token vLLM must."""
    return {
        "model": config.model.name,
        "prompt": list(token_ids),
        "max_tokens": 1,
        "temperature": 0,
        "prompt_logprobs": 1,
    }


def continuation_scores(request: EncodedRequest, entries: list) -> TokenScores:
    """The continuation's logprobs, read from the end of the list (as vllm_engine does): each
    entry maps token id (a string, in JSON) to its logprob and rank."""
    n = request.n_continuation
    tail = entries[len(entries) - n :]
    continuation = request.token_ids[request.n_context :]
    logprobs = np.empty(n, dtype=np.float64)
    greedy = np.empty(n, dtype=bool)
    for offset, (entry, token) in enumerate(zip(tail, continuation)):
        scored = entry[str(token)]
        logprobs[offset] = scored["logprob"]
        greedy[offset] = scored["rank"] == 1
    return TokenScores(logprobs, greedy, len(request.token_ids))


def load_tokenizer(config: OpenAiConfig):
    from transformers import AutoTokenizer  # heavy (imports torch): only when named

    name = ModelConfig(name=config.tokenizer, allow_download=config.model.allow_download)
    return AutoTokenizer.from_pretrained(resolve_model_path(name))


def scoring_needs_tokenizer(config: OpenAiConfig) -> str:
    return (
        f"engine.tokenizer: scoring through {config.base_url} needs the served model's "
        f"tokenizer ('default', a local folder or a cached hub id), to split contexts from "
        f"answers exactly; set engine.tokenizer, or use this server as the rewriter only"
    )


# ----- checks before anything starts --------------------------------------------------------


def check_server(config: OpenAiConfig, role: str) -> None:
    """One line, before any engine starts, for what would fail in every request: a missing key,
    no server at the URL, another model served, a window larger than the server's, a scorer
    that cannot score or tokenizes differently, a prefill the server rejects."""
    if problem := missing_key(config.api_key_env):
        raise ValueError(problem)
    try:
        check_served_model(config, role)
    except (ServerError, ServerUnavailable) as error:
        raise ValueError(f"engine.base_url: {error}") from None


def check_served_model(config: OpenAiConfig, role: str) -> None:
    endpoint = Endpoint(config, quick=True)
    served = {entry["id"]: entry for entry in endpoint.call("/models", method="GET")["data"]}
    name = config.model.name
    if name not in served:
        raise ValueError(
            f"engine.model: {config.base_url} serves {', '.join(map(repr, served))}, not {name!r}"
        )
    window = served[name].get("max_model_len")
    if window and config.model.max_model_len > window:
        raise ValueError(
            f"engine.model.max_model_len: {config.model.max_model_len} is more than the "
            f"{window} tokens {name!r} is served with; set it to at most {window}"
        )
    if role == "scorer":
        check_scoring(config, endpoint)
    elif config.continue_final_message:
        check_prefill(config, endpoint)


def check_scoring(config: OpenAiConfig, endpoint: Endpoint) -> None:
    if config.tokenizer is None:
        raise ValueError(scoring_needs_tokenizer(config))
    ids = load_tokenizer(config).encode(PROBE_TEXT, add_special_tokens=False)
    try:
        answer = endpoint.call("/completions", logprob_body(config, ids))
    except ServerError as error:  # a server without prompt_logprobs refuses the field
        raise ValueError(f"{config.base_url}: {CANNOT_SCORE} ({error})") from None
    entries = answer["choices"][0].get("prompt_logprobs")
    if (
        not entries
        or len(entries) != len(ids)
        or any(str(t) not in e for t, e in zip(ids[1:], entries[1:]))
    ):
        raise ValueError(f"{config.base_url}: {CANNOT_SCORE}")
    try:
        body = {"model": config.model.name, "prompt": PROBE_TEXT, "add_special_tokens": False}
        served_ids = endpoint.call("/tokenize", body, at_root=True)["tokens"]
    except ServerError:  # no /tokenize (not vLLM): the logprob probe above is the check
        log.warning(
            "%s has no /tokenize; the tokenizer round-trip check is skipped", config.base_url
        )
        return
    if served_ids != ids:
        raise ValueError(
            f"engine.tokenizer: {config.tokenizer!r} does not tokenize like the served model "
            f"{config.model.name!r} (a probe: {len(ids)} tokens here, {len(served_ids)} there); "
            f"name the served model's own tokenizer"
        )


def check_prefill(config: OpenAiConfig, endpoint: Endpoint) -> None:
    body = {
        "model": config.model.name,
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi"},
        ],
        "max_tokens": 1,
        "add_generation_prompt": False,
        "continue_final_message": True,
    }
    try:
        endpoint.call("/chat/completions", body)
    except ServerError as error:
        raise ValueError(
            f"engine.continue_final_message: {config.base_url} refuses a prefill ({error}); set "
            f"it false (rewrites then use the long meta-prompt)"
        ) from None
