"""Word-level difference between two prompts, as plain operations both renderers draw from.

Each word is compared together with the whitespace after it, so a run of changed words reads
as one removed phrase and one added phrase rather than alternating word by word; joining the
pieces of either side gives back that side's text exactly.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass
from typing import Literal

_PIECES = re.compile(r"^\s+|\S+\s*")


@dataclass(frozen=True)
class DiffPiece:
    op: Literal["same", "removed", "added"]
    text: str


def word_diff(old: str, new: str) -> tuple[DiffPiece, ...]:
    """Pieces that read `old` when 'added' ones are skipped and `new` when 'removed' ones are."""
    a, b = _PIECES.findall(old), _PIECES.findall(new)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    pieces: list[DiffPiece] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pieces.append(DiffPiece("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(DiffPiece("removed", "".join(a[i1:i2])))
        if j2 > j1:
            pieces.append(DiffPiece("added", "".join(b[j1:j2])))
    return tuple(pieces)


def changed_words(pieces: tuple[DiffPiece, ...], op: str) -> list[str]:
    return [word for p in pieces if p.op == op for word in p.text.split()]


def markdown_diff(pieces: tuple[DiffPiece, ...]) -> str:
    """A fenced `diff` block in git's --word-diff=plain notation: [-removed-] and {+added+}.

    The fence is longer than any backtick run in the prompts, so no prompt can close it.
    """
    body = "".join(_marked(p) for p in pieces).rstrip("\n") or "(both prompts are empty)"
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}diff\n{body}\n{fence}"


def _marked(piece: DiffPiece) -> str:
    if piece.op == "same":
        return piece.text
    # Whitespace stays outside the markers so the marked words read like the text around them.
    lead, core, trail = _split_space(piece.text)
    if not core:
        return piece.text if piece.op == "added" else ""
    mark = ("[-", "-]") if piece.op == "removed" else ("{+", "+}")
    return f"{lead}{mark[0]}{core}{mark[1]}{trail}"


def _split_space(text: str) -> tuple[str, str, str]:
    core = text.strip()
    if not core:
        return text, "", ""
    start = text.index(core[0])
    return text[:start], core, text[start + len(core) :]


def html_diff(pieces: tuple[DiffPiece, ...]) -> str:
    """Escaped HTML: removed words in <del>, added words in <ins>, line breaks kept by CSS."""
    tags = {"same": ("", ""), "removed": ("<del>", "</del>"), "added": ("<ins>", "</ins>")}
    out = []
    for piece in pieces:
        start, end = tags[piece.op]
        out.append(f"{start}{html.escape(piece.text)}{end}")
    return "".join(out)
