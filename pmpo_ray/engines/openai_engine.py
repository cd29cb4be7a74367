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
from typing import Sequence

import numpy as np
import pyarrow as pa

from pmpo_ray.config import PromptFormat
from pmpo_ray.engines.chat import chat_messages
from pmpo_ray.engines.generation import (
    PreparedGeneration,
    Sample,
    generation_rows,
    prepare_generation,
)
from pmpo_ray.engines.openai_config import (
    CANNOT_SCORE,
    OpenAiConfig,
    load_tokenizer,
    logprob_body,
    scoring_needs_tokenizer,
)
from pmpo_ray.engines.openai_http import Endpoint, ServerError
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.scoring import PreparedScoring, TokenScores, describe_row, tail_scores
from pmpo_ray.engines.tokenization import EncodedRequest
from pmpo_ray.requests import REQUIRED_GENERATE_COLUMNS, check_columns

log = logging.getLogger(__name__)

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
        if row.get("stop"):  # OpenAI's API, like vLLM, leaves the stop string out of the text
            sampling["stop"] = list(row["stop"])
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


def continuation_scores(request: EncodedRequest, entries: list) -> TokenScores:
    """The server's prompt logprobs: per position, token id (a string, in JSON) -> its
    logprob and rank."""
    return tail_scores(request, entries, _logprob_and_rank)


def _logprob_and_rank(entry: dict, token: int) -> tuple[float, int]:
    scored = entry[str(token)]
    return scored["logprob"], scored["rank"]
