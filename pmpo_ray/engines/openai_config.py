"""The OpenAI-compatible backend's config (engines/openai_engine.py is the engine) and its
checks before anything starts: what would fail in every request is refused in one line while
the job is still starting: a missing key, no server at the URL, another model served, a window
larger than the server's, a scorer that cannot score or tokenizes differently, a prefill the
server rejects. Also what both the checks and the engine use: the logprob request and the
served tokenizer."""

from __future__ import annotations

import logging
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from pmpo_ray.config import EngineSettings, ModelConfig
from pmpo_ray.engines.models import resolve_model_path
from pmpo_ray.engines.openai_http import Endpoint, ServerError, ServerUnavailable, missing_key

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
