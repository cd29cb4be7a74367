"""Draw the report's blocks as GitHub-flavoured Markdown.

User text (task ids, prompts, stop reasons) is escaped so it can neither break a table nor
smuggle raw HTML into a Markdown viewer; prompts themselves appear only inside fences that are
longer than any backtick run they contain.
"""

from __future__ import annotations

import re

from pmpo_ray.reports import document as doc
from pmpo_ray.reports.prompt_diff import markdown_diff
from pmpo_ray.reports.tables import Table

# An underscore inside a word (multiple_choice) never starts emphasis, so it stays readable.
_SPECIAL = re.compile(r"([\\`*\[\]|#]|(?<!\w)_|_(?!\w))")
_HTML = {"<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    text = _SPECIAL.sub(r"\\\1", text)
    text = re.sub(r"[<>]", lambda m: _HTML[m.group()], text)
    return " ".join(text.splitlines())


def inline(text: str) -> str:
    """Escaped text in which `backticked` parts stay code spans."""
    parts = text.split("`")
    return "".join(f"`{p}`" if i % 2 else escape(p) for i, p in enumerate(parts))


def fence(text: str, language: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{language}\n{text.rstrip()}\n{marks}"


def table(t: Table) -> str:
    lines = [
        "| " + " | ".join(escape(h) for h in t.headers) + " |",
        "|" + "|".join("---" if i == 0 else "--:" for i in range(len(t.headers))) + "|",
    ]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def block(b: doc.Block) -> str:
    match b:
        case doc.Heading(level, text):
            return f"{'#' * level} {escape(text)}"
        case doc.Paragraph(text):
            return inline(text)
        case doc.KeyValues(items):
            return "\n".join(f"- **{escape(key)}**: {inline(value)}" for key, value in items)
        case doc.TableBlock(t):
            return table(t)
        case doc.Image(src, alt):
            return f"![{escape(alt)}]({src})"
        case doc.Diff(pieces):
            return markdown_diff(pieces)
        case doc.Code(text):
            return fence(text, "text")
    raise TypeError(f"unknown report block {b!r}")


def render_markdown(blocks: list[doc.Block]) -> str:
    return "\n\n".join(block(b) for b in blocks) + "\n"
