"""Draw the report's blocks as one self-contained HTML page (the PNGs are relative links).

Every piece of text goes through html.escape, and the page forbids scripts outright, so a
prompt that contains markup is shown as text and can never run.
"""

from __future__ import annotations

from html import escape

from pmpo_ray.reports import document as doc
from pmpo_ray.reports.prompt_diff import html_diff
from pmpo_ray.reports.tables import Table

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f8fa; padding: 0.7rem; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.diff del { background: #ffd7d5; color: #82071e; }
pre.diff ins { background: #ccffd8; color: #055d20; text-decoration: none; }
pre.diff del, pre.diff ins { padding: 0 0.15em; border-radius: 2px; }
img { max-width: 100%; border: 1px solid #eee; }
dt { font-weight: 600; float: left; clear: left; margin-right: 0.5rem; }
dt::after { content: ":"; }
dd { margin: 0 0 0.2rem 0; }
"""
# No script may run in a report, whatever text ends up in it.
POLICY = "script-src 'none'; object-src 'none'; base-uri 'none'"


def inline(text: str) -> str:
    """Escaped text in which `backticked` parts become <code>."""
    parts = text.split("`")
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else escape(p) for i, p in enumerate(parts))


def table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>\n" for row in t.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def block(b: doc.Block) -> str:
    match b:
        case doc.Heading(level, text):
            return f"<h{level}>{escape(text)}</h{level}>"
        case doc.Paragraph(text):
            return f"<p>{inline(text)}</p>"
        case doc.KeyValues(items):
            rows = "".join(f"<dt>{escape(k)}</dt><dd>{inline(v)}</dd>\n" for k, v in items)
            return f"<dl>\n{rows}</dl>"
        case doc.TableBlock(t):
            return table(t)
        case doc.Image(src, alt):
            return f'<p><img src="{escape(src)}" alt="{escape(alt)}"></p>'
        case doc.Diff(pieces):
            return f'<pre class="diff">{html_diff(pieces)}</pre>'
        case doc.Code(text):
            return f"<pre>{escape(text)}</pre>"
    raise TypeError(f"unknown report block {b!r}")


def render_html(blocks: list[doc.Block], title: str) -> str:
    body = "\n".join(block(b) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
