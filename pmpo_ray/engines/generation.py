"""What every generation backend shares: request checks and the result table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from pmpo_ray.engines.batch_tokenization import encode_rows
from pmpo_ray.engines.chat import TemplateFrames, render_table
from pmpo_ray.engines.scoring import describe_row
from pmpo_ray.engines.tokenization import RequestTooLongError
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA, REQUIRED_GENERATE_COLUMNS, check_columns

Sample = tuple[str, int, str]  # (text, generated tokens, finish reason)


def cut_at_stop(text: str, stop: Sequence[str]) -> str | None:
    """`text` up to the earliest of the request's stop strings, or None where none occurs:
    what vLLM answers for a request with `stop` (the string itself left out)."""
    ends = [text.find(string) for string in stop if string and string in text]
    return text[: min(ends)] if ends else None


def prompt_token_ids(
    requests: pa.Table, tokenizer, max_len: int, frames: TemplateFrames | None = None
) -> list[list[int]]:
    """Render and tokenize every request up front; a prompt that leaves no room to answer is
    an error. `frames`: the engine's template frames, kept across batches."""
    check_columns(requests, REQUIRED_GENERATE_COLUMNS, "generate requests")
    rendered = render_table(requests, tokenizer, "generate requests", frames)
    rows = range(requests.num_rows)
    encodings = encode_rows(tokenizer, rendered, [""] * len(rows), [None] * len(rows), rows)
    token_ids = []
    for row in rows:
        ids = list(encodings[row].token_ids)
        if len(ids) >= max_len:
            raise RequestTooLongError(
                f"{describe_row(requests, row)}: prompt is {len(ids)} tokens, "
                f"{len(ids) - max_len + 1} over what the model's window of {max_len} leaves "
                f"for an answer"
            )
        token_ids.append(ids)
    return token_ids


@dataclass(frozen=True)
class PreparedGeneration:
    """A generation call with its prompts rendered, tokenized and checked against the window,
    for a backend's `run`."""

    table: pa.Table
    token_ids: tuple[list[int], ...]


def prepare_generation(
    requests: pa.Table, tokenizer, max_len: int, frames: TemplateFrames | None = None
) -> PreparedGeneration:
    ids = prompt_token_ids(requests, tokenizer, max_len, frames)
    return PreparedGeneration(requests, tuple(ids))


def generation_rows(
    requests: pa.Table, samples: Sequence[Sequence[Sample]], prompt_lengths: Sequence[int]
) -> pa.Table:
    """One row per (request, sample); checks each request got the samples it asked for.
    `prompt_lengths`: each rendered prompt's tokens, which its rows report."""
    rows = []
    for request, request_samples, prompt_length in zip(
        requests.to_pylist(), samples, prompt_lengths
    ):
        if len(request_samples) != request["n"]:
            raise RuntimeError(
                f"request {request['request_id']}: asked for {request['n']} samples, "
                f"got {len(request_samples)}"
            )
        for index, (text, n_tokens, finish_reason) in enumerate(request_samples):
            rows.append(
                {
                    "request_id": request["request_id"],
                    "sample_index": index,
                    "text": text,
                    "n_tokens": n_tokens,
                    "finish_reason": finish_reason,
                    "n_prompt_tokens": prompt_length,
                }
            )
    return pa.Table.from_pylist(rows, schema=GENERATE_RESULT_SCHEMA)
