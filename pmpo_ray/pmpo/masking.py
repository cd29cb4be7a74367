"""Mask-guided importance: which parts of a prompt help, hurt, or do nothing.

The model is asked to copy the prompt with at most a few removable units wrapped in
`<mask></mask>`. A unit is only trusted when it is a verbatim piece of the prompt: small models
paraphrase, nest or repeat, and a unit that is not in the prompt cannot be masked. When the
model's answer fails, a deterministic sentence splitter takes over and the record says so.
Masking unit j and re-scoring gives delta_j = L(masked) - L(prompt): positive means the unit
helps (removing it costs), negative means it hurts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Sequence

MASK_TOKEN = "<MASK>"
MAX_UNITS = 5

Span = tuple[int, int]

_TAG = re.compile(r"<(/?)mask\s*>", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Segmentation:
    spans: tuple[Span, ...]  # [start, end) character spans into the prompt, in order, disjoint
    method: Literal["model", "sentences"]
    rejected_reason: str  # "" when the model's units were used

    def units(self, prompt: str) -> tuple[str, ...]:
        return tuple(prompt[start:end] for start, end in self.spans)


def segmentation_request(prompt: str, max_units: int = MAX_UNITS) -> str:
    # Delimited by ### rather than <prompt> tags: the rewrite step owns <prompt>, and a short
    # instruction with one example is what a 135M model can follow.
    return (
        f"Copy the text between the ### lines exactly. Wrap at most {max_units} parts that could "
        "each be removed on their own in <mask></mask>. Do not nest or overlap tags and do not "
        "change any words. If no part can be removed, copy the text with no tags.\n"
        "Example text: Be polite. Answer in French.\n"
        "Example output: <mask>Be polite.</mask> <mask>Answer in French.</mask>\n"
        f"###\n{prompt}\n###\nOutput:"
    )


def _tagged_units(model_output: str) -> tuple[list[str] | None, str]:
    """The texts inside <mask></mask> pairs, or (None, why the tags are malformed)."""
    units, depth, start = [], 0, 0
    for match in _TAG.finditer(model_output):
        closing = match.group(1) == "/"
        if not closing:
            if depth:
                return None, "nested <mask> tags"
            depth, start = 1, match.end()
        elif not depth:
            return None, "unbalanced <mask> tags (a closing tag without an opening one)"
        else:
            depth = 0
            units.append(model_output[start : match.start()])
    if depth:
        return None, "unbalanced <mask> tags (an opening tag is never closed)"
    return units, ""


def parse_mask_units(
    prompt: str, model_output: str, max_units: int = MAX_UNITS
) -> tuple[tuple[Span, ...] | None, str]:
    """Spans of the model's units in the prompt, or (None, why they cannot be used)."""
    _check_max_units(max_units)
    units, reason = _tagged_units(model_output)
    if units is None:
        return None, reason
    if not units:
        return None, "no <mask> units"
    if len(units) > max_units:
        return None, f"too many units ({len(units)} > {max_units})"
    spans, cursor = [], 0
    for unit in (u.strip() for u in units):
        if not unit:
            return None, "an empty <mask> unit"
        found = prompt.find(unit, cursor)
        if found < 0:
            if unit in prompt:
                return None, f"units overlap or are out of order at {unit[:40]!r}"
            return None, f"unit not verbatim in the prompt: {unit[:40]!r}"
        spans.append((found, found + len(unit)))
        cursor = found + len(unit)
    return tuple(spans), ""


def sentence_spans(prompt: str, max_units: int = MAX_UNITS) -> tuple[Span, ...]:
    """Sentences and lines of the prompt, merged into at most `max_units` adjacent groups."""
    _check_max_units(max_units)
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(prompt):
        pieces.append((start, match.start()))
        start = match.end()
    pieces.append((start, len(prompt)))
    pieces = [_strip_span(prompt, span) for span in pieces]
    pieces = [span for span in pieces if span[1] > span[0]]
    if len(pieces) <= max_units:
        return tuple(pieces)
    groups = []
    for index in range(max_units):  # near-equal piece counts per group
        first = index * len(pieces) // max_units
        last = (index + 1) * len(pieces) // max_units - 1
        groups.append((pieces[first][0], pieces[last][1]))
    return tuple(groups)


def _check_max_units(max_units: int) -> None:
    if max_units < 1:
        raise ValueError(f"max_units must be at least 1, got {max_units}")


def _strip_span(prompt: str, span: Span) -> Span:
    start, end = span
    while start < end and prompt[start].isspace():
        start += 1
    while end > start and prompt[end - 1].isspace():
        end -= 1
    return start, end


def segment(prompt: str, model_output: str | None, max_units: int = MAX_UNITS) -> Segmentation:
    if model_output is None:
        spans, reason = None, "no segmentation output"
    else:
        spans, reason = parse_mask_units(prompt, model_output, max_units)
    if spans is not None:
        return Segmentation(spans, "model", "")
    return Segmentation(sentence_spans(prompt, max_units), "sentences", reason)


def masked_prompt(prompt: str, span: Span) -> str:
    start, end = span
    return prompt[:start] + MASK_TOKEN + prompt[end:]


def mask_deltas(base_loss: float, masked_losses: Sequence[float]) -> tuple[float, ...]:
    return tuple(masked - base_loss for masked in masked_losses)


def render_masking(
    units: Sequence[str], deltas: Sequence[float], neutral_tolerance: float = 0.01
) -> str:
    """One line per unit, the way the rewriter reads it."""
    if len(units) != len(deltas):
        raise ValueError(f"{len(units)} units but {len(deltas)} deltas")
    if not units:
        return "No removable units were found in the prompt."
    return "\n".join(
        f'- "{_one_line(unit)}" {_verdict(delta, neutral_tolerance)}'
        for unit, delta in zip(units, deltas)
    )


def _one_line(unit: str) -> str:
    # Merged sentence groups can span line breaks; the rewriter expects one line per unit.
    return " ".join(unit.split())


def _verdict(delta: float, neutral_tolerance: float) -> str:
    if math.isnan(delta):  # a failed score must not read as "hurts"
        return "unmeasured (the masked prompt could not be scored)"
    if abs(delta) <= neutral_tolerance:
        return f"neutral (change {abs(delta):.3f})"
    if delta > 0:
        return f"helps (removing it raises the loss by {delta:.3f})"
    return f"hurts (removing it lowers the loss by {-delta:.3f})"
