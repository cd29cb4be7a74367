"""Tokenize a table's rows in one batched call, each distinct piece of their text once.

A scoring table repeats itself: every candidate prompt opens with the same template header,
each example's input comes once per candidate, and answers recur across examples. A fast
(Hugging Face) tokenizer first splits a text at its special tokens and tokenizes the parts
between them independently, so a row's text can be cut just after a special token of its
template and each piece tokenized on its own: the ids are the same, and a piece shared by many
rows is tokenized once (2,000 BBH rows of 8 prompts: about 260 distinct pieces).

A piece after a cut is tokenized with that special token still in front (then dropped), so it
never stands at the start of a text, where some pre-tokenizers add a space. The cut is exact
when the token cannot merge with its neighbours: it strips no whitespace, matches anywhere
(not as a single word only), is matched before normalization, and no other added token
overlaps it. A tokenizer may instead say itself where a text can be cut (`last_cut`: the
simulated backend's words, after any whitespace). Each template's first row is also tokenized
whole and compared with its pieces; a mismatch (a tokenizer that splits otherwise) sends that
template's rows whole, in a second call, as are all rows for a tokenizer with no cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

from pmpo_ray.engines.chat import RenderedRows


@dataclass(frozen=True)
class RowEncoding:
    """A row's token ids; `n_context` tokens end at or before its split character (all of
    them when the row has no split)."""

    token_ids: tuple[int, ...]
    n_context: int


@dataclass(frozen=True)
class Piece:
    """A piece's tokens, with each token's end offset counted from the piece's first
    character."""

    ids: tuple[int, ...]
    ends: tuple[int, ...]


@dataclass(frozen=True)
class Cuts:
    """Where a template's rows are cut: after `head` characters of the head and `tail`
    characters of the tail, each just after the special token named (None: no cut)."""

    head: tuple[int, str] | None
    tail: tuple[int, str] | None


# (text to tokenize, characters of a leading cut token to drop, where the piece starts in the row)
Placed = tuple[str, int, int]


def first_ending_after(ends: Sequence[int], chars: int) -> int:
    """Index of the first token ending after `chars` (tokenization.continuation_start)."""
    for index, end in enumerate(ends):
        if end > chars:
            return index
    return len(ends)


def tokenize(tokenizer, texts: Sequence[str], offsets: bool) -> dict[str, tuple[list, list]]:
    """text -> (ids, offsets or None), in one batched tokenizer call (offsets only when asked:
    a slow tokenizer has none, and generation needs none)."""
    if not texts:
        return {}
    texts = list(texts)
    if not offsets:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return {text: (row_ids, None) for text, row_ids in zip(texts, ids)}
    encoding = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return dict(zip(texts, zip(encoding["input_ids"], encoding["offset_mapping"])))


def isolated(token, contents: Sequence[str]) -> bool:
    """Whether a cut just after this added token is exact (see the module's docstring)."""
    if token.lstrip or token.rstrip or token.single_word or token.normalized:
        return False
    text = token.content
    for other in contents:
        if other != text and text in other:
            return False
        # `other` starting inside `text` and running past its end, or starting before it and
        # ending inside it, could be matched instead of it.
        start = text.find(other[0], 1)
        while start != -1:
            if other.startswith(text[start:]) and len(other) > len(text) - start:
                return False
            start = text.find(other[0], start + 1)
        end = text.rfind(other[-1], 0, len(text) - 1)
        while end != -1:
            if other.endswith(text[: end + 1]) and len(other) > end + 1:
                return False
            end = text.rfind(other[-1], 0, end)
    return True


def cut_tokens(tokenizer, frames: Sequence[str]) -> tuple[str, ...]:
    """The added tokens occurring in `frames` (templates' heads and tails) that a text may
    be cut after; none for a tokenizer that is not a fast Hugging Face one."""
    if not getattr(tokenizer, "is_fast", False):
        return ()
    added = list((getattr(tokenizer, "added_tokens_decoder", None) or {}).values())
    contents = [token.content for token in added if token.content]
    present = [t for t in added if t.content and any(t.content in frame for frame in frames)]
    return tuple(token.content for token in present if isolated(token, contents))


def last_cut(text: str, tokens: Sequence[str]) -> tuple[int, str] | None:
    """(position just after, token) of the last of `tokens` in `text`."""
    best = None
    for token in tokens:
        at = text.rfind(token)
        if at != -1 and (best is None or at + len(token) > best[0]):
            best = (at + len(token), token)
    return best


def place_pieces(head: str, middle: str, tail: str, continuation: str, cuts: Cuts) -> list[Placed]:
    """A row's text (head + middle + tail + continuation) as pieces cut where `cuts` says."""
    pieces, prefix, start, rest = [], "", 0, head
    if cuts.head is not None:
        at, token = cuts.head
        pieces.append((head[:at], 0, 0))
        prefix, start, rest = token, at, head[at:]
    if cuts.tail is None:
        return [*pieces, (prefix + rest + middle + tail + continuation, len(prefix), start)]
    at, token = cuts.tail
    pieces.append((prefix + rest + middle + tail[:at], len(prefix), start))
    tail_start = len(head) + len(middle) + at
    return [*pieces, (token + tail[at:] + continuation, len(token), tail_start)]


def as_piece(ids: Sequence[int], offsets: Sequence[tuple[int, int]], dropped: int) -> Piece | None:
    """A tokenized piece without its leading cut token (`dropped` characters); None when that
    token did not come out as one token of its own."""
    if dropped:
        if not offsets or tuple(offsets[0]) != (0, dropped):
            return None
        if len(offsets) > 1 and offsets[1][0] < dropped:
            return None
        ids, offsets = ids[1:], offsets[1:]
    return Piece(tuple(ids), tuple(end - dropped for _, end in offsets))


def compose(pieces: Sequence[tuple[Piece, int]], split: int | None) -> RowEncoding:
    """A row from its (piece, start) list; `split` as in RowEncoding."""
    token_ids: tuple[int, ...] = ()
    for piece, _ in pieces:
        token_ids += piece.ids
    if split is None:
        return RowEncoding(token_ids, len(token_ids))
    n_context = 0
    for index, (piece, start) in enumerate(pieces):
        # Tokens of a piece end within it: a piece wholly before the split is all context.
        if index + 1 < len(pieces) and pieces[index + 1][1] <= split:
            n_context += len(piece.ids)
            continue
        n_context += first_ending_after(piece.ends, split - start)
        break
    return RowEncoding(token_ids, n_context)


def whole(ids: Sequence[int], offsets: Sequence[tuple[int, int]], split: int | None) -> RowEncoding:
    n_context = len(ids) if split is None else first_ending_after([e for _, e in offsets], split)
    return RowEncoding(tuple(ids), n_context)


def text_cutter(tokenizer, frames: Sequence[str]) -> Callable | None:
    """text -> (position, token before it) of the last exact cut in the text, or None; None
    for a tokenizer whose texts cannot be cut."""
    own = getattr(tokenizer, "last_cut", None)
    if own is not None:
        return own
    tokens = cut_tokens(tokenizer, frames)
    return partial(last_cut, tokens=tokens) if tokens else None


def template_cuts(rendered: RenderedRows, rows: Sequence[int], cut: Callable) -> dict:
    """(head, tail) -> (Cuts, the template's first row) for templates of two rows or more
    that can be cut (one row alone gains nothing from pieces)."""
    first, count = {}, {}
    for row in rows:
        key = (rendered.heads[row], rendered.tails[row])
        first.setdefault(key, row)
        count[key] = count.get(key, 0) + 1
    plans = {}
    for key, row in first.items():
        cuts = Cuts(cut(key[0]), cut(key[1]))
        if count[key] > 1 and (cuts.head is not None or cuts.tail is not None):
            plans[key] = (cuts, row)
    return plans


def encode_rows(
    tokenizer,
    rendered: RenderedRows,
    continuations: Sequence[str],
    splits: Sequence[int | None],
    rows: Sequence[int],
) -> dict[int, RowEncoding]:
    """Each of `rows`' text (context + continuation) as token ids, and how many tokens end
    at or before its split character (the first scored character; None: no split)."""
    heads, inputs, tails = rendered.heads, rendered.inputs, rendered.tails
    cut = text_cutter(tokenizer, list({*(heads[r] for r in rows), *(tails[r] for r in rows)}))
    plans = template_cuts(rendered, rows, cut) if cut is not None else {}
    placed: dict[int, tuple[tuple[str, str], list[Placed]]] = {}  # row -> (template, pieces)
    texts: dict[int, str] = {}  # rows tokenized whole, and each template's check row
    for row in rows:
        template = (heads[row], tails[row])
        plan = plans.get(template)
        if plan is None or plan[1] == row:
            texts[row] = heads[row] + inputs[row] + tails[row] + continuations[row]
        if plan is not None:
            pieces = place_pieces(heads[row], inputs[row], tails[row], continuations[row], plan[0])
            placed[row] = (template, pieces)
    offsets = bool(plans) or any(splits[row] is not None for row in rows)
    results, retry = encode_placed(tokenizer, placed, texts, splits, offsets)
    again = {row: heads[row] + inputs[row] + tails[row] + continuations[row] for row in retry}
    results.update(encode_whole(tokenizer, again, splits, offsets))
    return results


def encode_placed(
    tokenizer, placed: dict, texts: dict[int, str], splits, offsets: bool
) -> tuple[dict[int, RowEncoding], list[int]]:
    """One tokenizer call over every distinct piece and whole text: the rows it encodes, and
    the rows of templates whose check row came out otherwise (to tokenize whole)."""
    distinct = {(text, dropped) for _, row in placed.values() for text, dropped, _ in row}
    encoded = tokenize(tokenizer, list({text for text, _ in distinct} | {*texts.values()}), offsets)
    pieces = {(text, dropped): as_piece(*encoded[text], dropped) for text, dropped in distinct}
    results = {row: whole(*encoded[text], splits[row]) for row, text in texts.items()}
    rows = {
        row: (template, [(pieces[text, dropped], start) for text, dropped, start in row_placed])
        for row, (template, row_placed) in placed.items()
    }
    failed = {  # each template's first row is also in `texts`: its pieces are checked
        template
        for row, (template, row_pieces) in rows.items()
        if row in results and not same_encoding(row_pieces, encoded[texts[row]], splits[row])
    }
    retry = []
    for row, (template, row_pieces) in rows.items():
        if row in results:
            continue
        if template in failed or any(piece is None for piece, _ in row_pieces):
            retry.append(row)
        else:
            results[row] = compose(row_pieces, splits[row])
    return results, retry


def encode_whole(tokenizer, texts: dict[int, str], splits, offsets: bool) -> dict:
    """row -> RowEncoding of each row's whole text, in one call."""
    encoded = tokenize(tokenizer, list(set(texts.values())), offsets)
    return {row: whole(*encoded[text], splits[row]) for row, text in texts.items()}


def same_encoding(pieces: Sequence[tuple[Piece, int]], whole_text, split: int | None) -> bool:
    """Whether a row's pieces give the ids and token ends of its whole text."""
    if any(piece is None for piece, _ in pieces):
        return False
    ids, offsets = whole_text
    ends = [start + end for piece, start in pieces for end in piece.ends]
    composed = compose(pieces, split)
    return (
        list(composed.token_ids) == list(ids)
        and ends == [end for _, end in offsets]
        and composed.n_context == whole(ids, offsets, split).n_context
    )
