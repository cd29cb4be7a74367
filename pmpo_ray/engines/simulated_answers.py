"""What the simulated backend answers to a generation request: what a cooperative model would.

- a segmentation request (pmpo/masking.py) is answered with the prompt's sentences, verbatim,
  each wrapped in <mask></mask>;
- a rewrite request (pmpo/rewrite.py, either meta-prompt) with the current prompt with one
  sentence replaced, added or dropped (drawn from the seed and sample index), inside
  <prompt></prompt>: it passes vetting unless it repeats an earlier prompt, which happens now
  and then, as with a real model;
- any other generation (held-out answers) with a short sentence.

Engines sit below the optimizer, so the requests are recognized by local mirrors of their
shapes, not by importing pmpo/: tests/test_simulated_engine.py checks each mirror against the
real request builders.
"""

from __future__ import annotations

import hashlib
import random
import re

from pmpo_ray.engines.generation import Sample, cut_at_stop

WORD = re.compile(r"\S+")  # a token of the simulated backend
# Mirrors masking.segmentation_request.
_SEGMENTATION = re.compile(r"Wrap at most (\d+) parts.*\n###\n(.*)\n###\nOutput:\Z", re.DOTALL)
# Mirrors masking.sentence_spans: a unit ends at a sentence's end or a line break.
_UNIT_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Mirror the two meta-prompts of rewrite.META_PROMPTS: their fixed lines, any field text between.
_META_PROMPTS = [
    re.compile(pattern + r"\Z", re.DOTALL)
    for pattern in (
        r"Prompt: (?P<current>.*?)\nTask: .*?\nExample: .*?\nCorrect answer: .*?\n"
        r"Analysis of the prompt's parts: .*?\nThe correct answer is unlikely under this "
        r"prompt\. Write an improved prompt for the whole task \(not for this one example\) "
        r"inside <prompt></prompt>\.",
        r"You are an expert prompt engineer\. .*?\n\n## Task\n.*?\n\n## Current prompt\n"
        r"(?P<current>.*?)\n\n## An input the current prompt handles badly\n.*?\n\n"
        r"## Reference answer for that input\n.*?\n\n## Mask analysis of the current prompt\n"
        r".*?\n\n## What to do\n.*, with nothing but the prompt inside the tags\.",
    )
]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SENTENCES = 6  # rewrites stay about as long as the prompt they start from
OPENERS = ("Read", "Check", "Reason about", "Compare", "Restate", "Weigh", "Trace", "Quote")
OBJECTS = ("the question", "each option", "every step", "the facts", "the last line", "the goal")
MANNERS = ("carefully", "step by step", "before answering", "twice", "in order", "briefly")


def simulated_sample(row: dict, index: int, room: int) -> Sample:
    """Sample `index` of a generation request: (text, tokens, finish reason); an answer longer
    than `max_tokens` (or the window's room) is cut there, as an engine cuts it."""
    text = simulated_text(row, index)
    stopped = cut_at_stop(text, row.get("stop") or ())
    if stopped is not None:  # like vLLM: the text ends before the stop string
        text = stopped
    words = WORD.findall(text)
    limit = min(row["max_tokens"], room)
    if len(words) <= limit:
        return text, len(words), "stop"
    return " ".join(words[:limit]), limit, "length"


def simulated_text(row: dict, index: int) -> str:
    """What a cooperative model would answer to this request (see the module's docstring)."""
    rng = random.Random(request_key(row, index))
    user_input = row["input"]
    segmentation = _SEGMENTATION.search(user_input)
    if segmentation is not None:
        units = sentence_units(segmentation.group(2), int(segmentation.group(1)))
        return " ".join(f"<mask>{unit}</mask>" for unit in units)
    current = current_prompt(user_input)
    if current is not None:
        rewritten = varied_prompt(current, rng)
        if "<prompt>" in (row.get("prefill") or ""):  # the answer already opened the tag
            return f"{rewritten}</prompt>"
        return f"The prompt leaves the answer's form implicit. <prompt>{rewritten}</prompt>"
    return f"The answer is {rng.choice(('yes', 'no', '(A)', '(B)', 'valid', '42'))}."


def request_key(row: dict, index: int) -> int:
    """A stable integer of the request's content, seed and sample index (Python's hash() is
    salted per process; replicas must agree)."""
    parts = [str(row.get(name) or "") for name in ("prompt", "role", "input", "prefill", "seed")]
    digest = hashlib.blake2b("\x1f".join([*parts, str(index)]).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def sentence_units(prompt: str, max_units: int) -> list[str]:
    """The prompt's sentences and lines, stripped, merged into at most `max_units` adjacent
    groups of near-equal counts: the units pmpo/masking.py's own splitter would make."""
    if max_units < 1:  # as the splitter refuses it
        raise ValueError(f"max_units must be at least 1, got {max_units}")
    cuts = [0, *(i for end in _UNIT_END.finditer(prompt) for i in end.span()), len(prompt)]
    spans = [_stripped(prompt, cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2)]
    spans = [(start, end) for start, end in spans if end > start]
    if len(spans) > max_units:
        n = len(spans)
        bounds = [(k * n // max_units, (k + 1) * n // max_units - 1) for k in range(max_units)]
        spans = [(spans[first][0], spans[last][1]) for first, last in bounds]
    return [prompt[start:end] for start, end in spans]


def _stripped(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without the white space at either end (empty or reversed: blank)."""
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())


def current_prompt(user_input: str) -> str | None:
    """The prompt a rewrite request asks to improve; None for another request."""
    for pattern in _META_PROMPTS:
        match = pattern.match(user_input)
        if match is not None:
            return match.group("current")
    return None


def varied_prompt(current: str, rng: random.Random) -> str:
    """`current` with one sentence replaced, added or dropped, its length kept within
    MAX_SENTENCES."""
    sentences = [s for s in _SENTENCE_END.split(current.strip()) if s]
    new = f"{rng.choice(OPENERS)} {rng.choice(OBJECTS)} {rng.choice(MANNERS)}."
    moves = ["replace"] * bool(sentences)
    moves += ["add"] * (len(sentences) < MAX_SENTENCES) + ["drop"] * (len(sentences) > 1)
    move, at = rng.choice(moves), rng.randrange(len(sentences) + 1)
    if move == "replace":
        sentences[at % len(sentences)] = new
    elif move == "add":
        sentences.insert(at, new)
    else:
        del sentences[at % len(sentences)]
    return " ".join(sentences)
