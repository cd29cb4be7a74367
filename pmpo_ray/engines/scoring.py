"""What every scoring backend shares: validate, encode, batch long-first, restore order.

A backend only supplies `token_scores(batch) -> [TokenScores]` for the continuation tokens of
each encoded request (and how many tokens it actually computed for it); everything that could
silently lose or reorder a row lives here, once, and is tested without an engine. A call is
two halves: `prepare_scoring` (CPU: validate, render, tokenize, fit the window; every error
that names a row) and `run_scoring` (the backend's batches), so a replica can prepare its
next batch while the engine runs this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pyarrow as pa

from pmpo_ray.engines.batch_tokenization import encode_rows
from pmpo_ray.engines.chat import TemplateFrames, render_table
from pmpo_ray.engines.models import local_model_folder
from pmpo_ray.engines.prefix_sharing import prefix_ordered_batches
from pmpo_ray.engines.tokenization import (
    EncodedRequest,
    check_continuation,
    fit_to_window,
    scored_from,
    split_request,
)
from pmpo_ray.requests import (
    REQUIRED_SCORE_COLUMNS,
    SCORE_RESULT_FIELDS,
    TOKEN_LOGPROBS_FIELD,
    check_columns,
)


class TokenScores(NamedTuple):
    logprobs: np.ndarray  # one per continuation token
    greedy: np.ndarray  # whether each continuation token was the argmax
    computed: int  # tokens the forward pass ran for this row (less than all of them when a
    # prefix computed for another row was reused)


TokenScorer = Callable[[Sequence[EncodedRequest]], list[TokenScores]]


def tail_scores(
    request: EncodedRequest, prompt_logprobs: Sequence, read: Callable[[object, int], tuple]
) -> TokenScores:
    """The continuation's scores, read from the end of a backend's per-position prompt
    logprobs: with a prefix cache hit, vLLM's V1 runner leaves the cached rows uninitialized
    and its V2 GPU runner returns a shorter list (a server returns what its engine did); the
    last `n_continuation` entries are the continuation's either way. `read(entry, token)` is
    the backend's (logprob, rank) of `token` in one position's entry."""
    n = request.n_continuation
    tail = prompt_logprobs[len(prompt_logprobs) - n :]
    continuation = request.token_ids[request.n_context :]
    logprobs = np.empty(n, dtype=np.float64)
    greedy = np.empty(n, dtype=bool)
    for offset, (entry, token) in enumerate(zip(tail, continuation)):
        logprobs[offset], rank = read(entry, token)
        greedy[offset] = rank == 1
    return TokenScores(logprobs, greedy, len(request.token_ids))


def describe_row(table: pa.Table, row: int) -> str:
    """'request 7 (task 'navigate', example '12')' with whatever ids the table has."""
    parts = [f"request {table.column('request_id')[row].as_py()}"]
    labels = [
        f"{name.removesuffix('_id')} {table.column(name)[row].as_py()!r}"
        for name in ("task_id", "candidate_id", "example_id")
        if name in table.column_names
    ]
    if labels:
        parts.append(f"({', '.join(labels)})")
    return " ".join(parts)


def encode_table(
    table: pa.Table,
    tokenizer,
    max_len: int,
    truncate_left: bool,
    frames: TemplateFrames | None = None,
) -> list[EncodedRequest]:
    """Render and encode every row before any is scored, so a bad row fails the batch up
    front: the first bad row in row order, named (as tokenization.encode_pair row by row
    would, with all rows tokenized in one call)."""
    check_columns(table, REQUIRED_SCORE_COLUMNS, "score requests")
    rendered = render_table(table, tokenizer, "score requests", frames)
    continuations = table.column("continuation").to_pylist()
    splits = [scored_from(context) for context in rendered.contexts()]
    usable = [row for row, text in enumerate(continuations) if text is not None and text.strip()]
    encodings = encode_rows(tokenizer, rendered, continuations, splits, usable)
    encoded = []
    for row, continuation in enumerate(continuations):
        describe = partial(describe_row, table, row)  # built only for an error
        if continuation is None:
            raise ValueError(f"{describe()}: context or continuation is null")
        try:
            check_continuation(continuation, row)
            encoding = encodings[row]
            request = split_request(row, encoding.token_ids, encoding.n_context)
        except ValueError as error:
            raise type(error)(f"{describe()}: {error}") from None
        encoded.append(fit_to_window(request, max_len, truncate_left, describe))
    return encoded


def long_first_batches(
    requests: Sequence[EncodedRequest], max_batch_tokens: int, skip: int = 0
) -> list[list[EncodedRequest]]:
    """Sort by length (longest first) and cut batches at a padded-token budget; `skip` leading
    tokens of every row do not count (a shared prefix read from a cache).

    Longest first means the first batch shows the worst-case memory at once, and padding
    inside each batch stays small because neighbours have similar lengths.
    """
    ordered = sorted(requests, key=lambda r: len(r.token_ids), reverse=True)
    batches: list[list[EncodedRequest]] = []
    current: list[EncodedRequest] = []
    for request in ordered:
        padded = (len(current[0].token_ids) - skip) * (len(current) + 1) if current else 0
        if current and padded > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(request)
    if current:
        batches.append(current)
    return batches


def score_encoded(
    requests: Sequence[EncodedRequest],
    token_scorer: TokenScorer,
    max_batch_tokens: int,
    share_prefixes: bool = False,
) -> list[TokenScores]:
    """Run the backend over batches and hand results back in input order. Batches are
    long-first, or with `share_prefixes` in token order, so rows sharing a prefix meet."""
    results: list[TokenScores | None] = [None] * len(requests)
    position = {request.row: index for index, request in enumerate(requests)}
    cut = prefix_ordered_batches if share_prefixes else long_first_batches
    for batch in cut(requests, max_batch_tokens):
        scores = token_scorer(batch)
        if len(scores) != len(batch):
            raise RuntimeError(f"backend returned {len(scores)} results for {len(batch)} requests")
        for request, row_scores in zip(batch, scores):
            logprobs = row_scores.logprobs
            index = position[request.row]
            if results[index] is not None:
                raise RuntimeError(f"row {request.row} scored twice")
            if len(logprobs) != request.n_continuation:
                raise RuntimeError(
                    f"row {request.row}: {len(logprobs)} logprobs for "
                    f"{request.n_continuation} continuation tokens"
                )
            results[index] = row_scores
    missing = [requests[i].row for i, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"rows {missing[:10]} never came back from the backend")
    return results  # type: ignore[return-value]


def attach_scores(
    table: pa.Table,
    encoded: Sequence[EncodedRequest],
    scores: Sequence[TokenScores],
    with_token_logprobs: bool,
) -> pa.Table:
    """The request rows plus logprob_sum, n_tokens, is_greedy, n_input_tokens,
    n_computed_tokens (and per-token values)."""
    logprob_sum = [float(np.sum(s.logprobs, dtype=np.float64)) for s in scores]
    n_tokens = [len(s.logprobs) for s in scores]
    is_greedy = [bool(np.all(s.greedy)) for s in scores]
    n_input = [len(request.token_ids) for request in encoded]
    computed = [s.computed for s in scores]
    columns = [logprob_sum, n_tokens, is_greedy, n_input, computed]
    for field, values in zip(SCORE_RESULT_FIELDS, columns):
        table = table.append_column(field, pa.array(values, type=field.type))
    if with_token_logprobs:
        values = [np.asarray(s.logprobs, dtype=np.float32).tolist() for s in scores]
        table = table.append_column(
            TOKEN_LOGPROBS_FIELD, pa.array(values, type=TOKEN_LOGPROBS_FIELD.type)
        )
    return table


@dataclass(frozen=True)
class PreparedScoring:
    """A scoring call with everything but the engine's work done: its rows validated,
    rendered, tokenized and fitted to the window (`prepare_scoring`), for `run_scoring`."""

    table: pa.Table
    encoded: tuple[EncodedRequest, ...]
    with_token_logprobs: bool
    share_prefixes: bool


def prepare_scoring(
    table: pa.Table,
    *,
    tokenizer,
    max_len: int,
    truncate_left: bool = False,
    with_token_logprobs: bool = False,
    share_prefixes: bool = False,
    frames: TemplateFrames | None = None,
) -> PreparedScoring:
    """Every error that names a row is raised here, before an engine is needed. `frames`:
    the engine's template frames, kept across batches."""
    encoded = encode_table(table, tokenizer, max_len, truncate_left, frames)
    return PreparedScoring(table, tuple(encoded), with_token_logprobs, share_prefixes)


def run_scoring(
    prepared: PreparedScoring, *, token_scorer: TokenScorer, max_batch_tokens: int
) -> pa.Table:
    """The engine's part: score the encoded rows in batches, attach the results."""
    scores = score_encoded(
        prepared.encoded, token_scorer, max_batch_tokens, prepared.share_prefixes
    )
    return attach_scores(prepared.table, prepared.encoded, scores, prepared.with_token_logprobs)


def score_table(
    table: pa.Table,
    *,
    tokenizer,
    token_scorer: TokenScorer,
    max_len: int,
    max_batch_tokens: int,
    truncate_left: bool = False,
    with_token_logprobs: bool = False,
    share_prefixes: bool = False,
) -> pa.Table:
    prepared = prepare_scoring(
        table,
        tokenizer=tokenizer,
        max_len=max_len,
        truncate_left=truncate_left,
        with_token_logprobs=with_token_logprobs,
        share_prefixes=share_prefixes,
    )
    return run_scoring(prepared, token_scorer=token_scorer, max_batch_tokens=max_batch_tokens)


def check_rows_fit(tables: Sequence[pa.Table], engine, prompt_format) -> None:
    """Every row fits the model's window, checked with the tokenizer alone (no engine): a
    too-long row fails in seconds, in one line naming it, not inside a replica a minute
    later. An engine whose model is not on this machine (downloaded by the replicas) is
    checked there instead."""
    if not engine.loads_model:  # the simulated backend: words, no window
        return
    from transformers import AutoTokenizer  # heavy (imports torch): only when there is a model

    folder = local_model_folder(engine.model)
    if folder is None:
        return
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for requests in tables:
        encode_table(requests, tokenizer, engine.model.max_model_len, prompt_format.truncate_left)
