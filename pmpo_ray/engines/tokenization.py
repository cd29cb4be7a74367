"""Turn (context, continuation) text pairs into token ids with a known split point.

Context and continuation are tokenized together, as the model will read them, and split where
the continuation's characters begin; tokenizing them apart would invent a token boundary the
model never sees. Spaces between the two belong to the continuation (lm-eval's rule), so
" Yes" is scored as one answer token instead of a dangling space in the context. Line breaks
stay in the context: a chat template ends its assistant header with one, and that newline is
the template's structure, not part of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class EncodedRequest:
    """One request as token ids: `token_ids[n_context:]` is the scored continuation."""

    row: int
    token_ids: tuple[int, ...]
    n_context: int
    truncated_tokens: int = 0

    @property
    def n_continuation(self) -> int:
        return len(self.token_ids) - self.n_context


class RequestTooLongError(ValueError):
    pass


class EmptyContinuationError(ValueError):
    pass


def move_boundary_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """'Q: x\\nA: ' + 'yes' -> 'Q: x\\nA:' + ' yes'; a trailing newline stays put."""
    stripped = context.rstrip(" \t")
    return stripped, context[len(stripped) :] + continuation


def continuation_start(offsets: Sequence[tuple[int, int]], context_chars: int) -> int:
    """Index of the first token that covers any continuation character.

    A token straddling the boundary counts as continuation: it is the model's prediction of
    answer text, so its log-probability belongs to the answer.
    """
    for index, (_, end) in enumerate(offsets):
        if end > context_chars:
            return index
    return len(offsets)


def check_continuation(continuation: str, row: int) -> None:
    """An answer of only whitespace scores nothing: an error, not a zero."""
    if not continuation.strip():
        raise EmptyContinuationError(f"row {row}: the continuation (answer) is empty")


def split_request(row: int, token_ids: tuple[int, ...], n_context: int) -> EncodedRequest:
    """The request whose first `n_context` tokens are context; none of them is an error."""
    if n_context == 0:
        # The first token has no left context to be predicted from.
        raise EmptyContinuationError(
            f"row {row}: the context is empty; nothing predicts the answer"
        )
    return EncodedRequest(row=row, token_ids=token_ids, n_context=n_context)


def scored_from(context: str) -> int:
    """The character where the scored text begins: spaces ending the context move to the
    continuation (move_boundary_whitespace)."""
    return len(context.rstrip(" \t"))


def encode_pair(tokenizer, context: str, continuation: str, row: int) -> EncodedRequest:
    """Tokenize context+continuation once and split at the context's character length."""
    context, continuation = move_boundary_whitespace(context, continuation)
    check_continuation(continuation, row)
    encoding = tokenizer(
        context + continuation, add_special_tokens=False, return_offsets_mapping=True
    )
    n_context = continuation_start(encoding["offset_mapping"], len(context))
    return split_request(row, tuple(encoding["input_ids"]), n_context)


def fit_to_window(
    request: EncodedRequest,
    max_len: int,
    truncate_left: bool,
    describe: str | Callable[[], str],
) -> EncodedRequest:
    """Enforce the model window: error by default, or drop context tokens from the left.
    `describe` names the row in an error (a callable is called only then)."""
    excess = len(request.token_ids) - max_len
    if excess <= 0:
        return request
    if callable(describe):
        describe = describe()
    if not truncate_left:
        raise RequestTooLongError(
            f"{describe}: {len(request.token_ids)} tokens, {excess} over the model's window of "
            f"{max_len}; shorten the prompt or input, raise engine.model.max_model_len, or set "
            f"prompt_format.truncate_left: true"
        )
    if excess >= request.n_context:
        raise RequestTooLongError(
            f"{describe}: the continuation alone ({request.n_continuation} tokens) does not fit "
            f"the model's window of {max_len} with one context token"
        )
    return EncodedRequest(
        row=request.row,
        token_ids=request.token_ids[excess:],
        n_context=request.n_context - excess,
        truncated_tokens=excess,
    )


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens of each text as the model reads it inside a message (no special tokens)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
