"""Ask a model for a better prompt, and decide whether what it wrote can be used.

PMPO improves a prompt by showing a model one hard example, the loss analysis of the
prompt's parts, and the prompt itself, then asking for a rewrite. Models answer in free text,
often malformed or merely repeating the prompt, so every output is vetted before it costs a
scoring pass. The reasons for rejection are a fixed vocabulary so runs can report them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Literal

from pmpo_ray.pmpo.guards import (
    NO_SHARED_WORDING,
    RewriteGuards,
    SharedWording,
    guard_rejection,
)
from pmpo_ray.requests import generation_row
from pmpo_ray.tasks.example import Example

MetaPromptStyle = Literal["long", "short"]

REJECTION_REASONS = (
    "no_prompt_tag",
    "empty",
    "unchanged",
    "duplicate",
    "leaks_example",
    "lists_options",
    "too_long",
)

FIELDS = ("task_description", "user_input", "true_answer", "mask_analysis", "current_prompt")

LONG_META_PROMPT = """You are an expert prompt engineer. A language model is given an instruction prompt and then a user input, and it should answer with the reference answer. Under the current prompt, the model assigns the reference answer a low probability (a high cross-entropy loss). Your job is to rewrite the prompt so that the reference answer becomes more likely, on this input and on every other input of the task.

## Task
{task_description}

## Current prompt
{current_prompt}

## An input the current prompt handles badly
{user_input}

## Reference answer for that input
{true_answer}

## Mask analysis of the current prompt
Each unit of the prompt was removed in turn and the loss measured again. Units whose removal raises the loss help; units whose removal lowers the loss hurt; the rest are neutral.
{mask_analysis}

## What to do
1. Diagnose: explain why the current prompt makes the reference answer unlikely. Use the mask analysis: which units help, which hurt, which do nothing, and what the prompt fails to say about the expected reasoning or answer format.
2. Revise, using whichever of these strategies fit the diagnosis:
   - Enhance structure: order the instructions into clear steps or sections.
   - Add rules: state constraints the answer must meet, such as its exact format.
   - Remove harmful parts: drop the units that raise the loss.
   - Rephrase: say unclear instructions more precisely.
   - Simplify: cut neutral filler that adds length without helping.
   - Expand: spell out reasoning the task needs but the prompt leaves implicit.
   - Consolidate: merge repeated or overlapping instructions.
   - Professional reframing: describe the role or expertise the task calls for.
   - Diversify wording: vary phrasing rather than repeating the same terms.
3. Do not overfit to this one example. The new prompt must work for any input of the task: do not copy this input, its reference answer, or its specific details into the prompt.

Write your diagnosis first. Then output exactly one new prompt between <prompt> and </prompt>, with nothing but the prompt inside the tags."""

SHORT_META_PROMPT = """Prompt: {current_prompt}
Task: {task_description}
Example: {user_input}
Correct answer: {true_answer}
Analysis of the prompt's parts: {mask_analysis}
The correct answer is unlikely under this prompt. Write an improved prompt for the whole task (not for this one example) inside <prompt></prompt>."""

META_PROMPTS: dict[str, str] = {"long": LONG_META_PROMPT, "short": SHORT_META_PROMPT}

# Where a rewrite ends: its generation stops there (OptimizerConfig.stop_at_prompt_tag).
CLOSING_TAG = "</prompt>"

# Small models rarely open the tag themselves (the 135M default never did in our runs), so the
# short style starts the model's answer with it; large models diagnose first, unprompted.
RESPONSE_PREFILL: dict[str, str] = {"long": "", "short": "<prompt>"}

_FIELD_PATTERN = re.compile(r"\{(" + "|".join(FIELDS) + r")\}")
# The content may not contain another opening tag, so a stray unclosed <prompt> earlier in
# the output does not swallow the text up to the next real pair.
_PROMPT_PATTERN = re.compile(
    r"<prompt\s*>((?:(?!<prompt\s*>).)*?)</prompt\s*>", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True)
class Vetted:
    text: str | None  # the accepted prompt, or None
    reason: str  # "" if accepted, else one of REJECTION_REASONS


# One greedy answer: how the rewriter answers a meta-prompt unless the caller samples.
GREEDY = MappingProxyType({"n": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0})


def rewrite_request(
    style: MetaPromptStyle,
    *,
    task_description: str,
    user_input: str,
    true_answer: str,
    mask_analysis: str,
    current_prompt: str,
) -> str:
    """The meta-prompt of `style` with the fields filled in.

    One regex pass over the template, not str.format or chained replace, so braces or
    "{field}" text inside a value are copied as they are and never expanded.
    """
    if style not in META_PROMPTS:
        raise ValueError(f"meta-prompt style must be one of {sorted(META_PROMPTS)}; got {style!r}")
    values = {
        "task_description": task_description,
        "user_input": user_input,
        "true_answer": true_answer,
        "mask_analysis": mask_analysis,
        "current_prompt": current_prompt,
    }
    return _FIELD_PATTERN.sub(lambda match: values[match.group(1)], META_PROMPTS[style])


def meta_prompt_row(
    request_id: int, *, task_id: str, message: str, max_tokens: int, prefill: str = "", **sampling
) -> dict:
    """A generation request that asks the rewriter model a meta-prompt (a rewrite or a
    segmentation). `sampling` sets generation_row's n, temperature, top_p, seed and stop; those
    it leaves out are GREEDY's (no stop string)."""
    return generation_row(
        request_id,
        task_id=task_id,
        prefill=prefill,
        max_tokens=max_tokens,
        # The meta-prompt is the user's message; no system prompt competes with it.
        prompt="",
        role="user",
        user_input=message,
        **(GREEDY | sampling),
    )


def extract_prompt(output: str) -> str | None:
    """The stripped text of the first non-empty <prompt>...</prompt> pair ("" when every pair
    is empty); None without a complete pair.

    Small models often echo the instruction's empty `<prompt></prompt>` before writing theirs.
    """
    contents = [match.group(1).strip() for match in _PROMPT_PATTERN.finditer(output)]
    if not contents:
        return None
    return next((text for text in contents if text), "")


def complete_prefilled(
    prefill: str, output: str, finished: bool, keep_cut: bool = False
) -> str:
    """The model's whole answer: the prefill it continued, plus a closing tag when the model
    ended its answer inside an opened pair (`finished`: EOS, or the `</prompt>` stop string,
    which the engine leaves out of the text).

    An answer the token budget cut off stays unclosed (rejected) unless `keep_cut`: then the
    last opened, unclosed pair is closed after its last complete sentence, when it has one.
    """
    text = prefill + output
    start = _unclosed_pair(text)
    if start is None:
        return text
    if finished:
        return text + CLOSING_TAG
    if keep_cut and (end := last_sentence_end(text[start:])):
        return text[: start + end] + CLOSING_TAG
    return text


# A sentence ends at . ! or ? after a word, with optional closing quotes or brackets, then a
# space or the end ("3.5" has none); not where the word is a list's number ("2." of "2. Check").
_SENTENCE_END = re.compile(r"(?<=\S)[.!?][\"')\]]*(?=\s|$)")
_LIST_MARK = re.compile(r"(?:^|\s)\(?\d{1,2}$")
_OPEN_TAG = re.compile(r"<prompt\s*>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</prompt\s*>", re.IGNORECASE)


def last_sentence_end(text: str) -> int:
    """Where the last complete sentence of `text` ends (0 without one)."""
    ends = [
        match.end()
        for match in _SENTENCE_END.finditer(text)
        if not _LIST_MARK.search(text[: match.start()])
    ]
    return ends[-1] if ends else 0


def _unclosed_pair(text: str) -> int | None:
    """Where the content of the last <prompt> starts, if no </prompt> follows it."""
    opened = list(_OPEN_TAG.finditer(text))
    if not opened or _CLOSE_TAG.search(text, opened[-1].end()):
        return None
    return opened[-1].end()


def vet_rewrite(
    output: str,
    *,
    current_prompt: str,
    seen: set[str],
    max_prompt_tokens: int,
    count_tokens: Callable[[str], int],
    examples: Sequence[Example] = (),
    shared: SharedWording = NO_SHARED_WORDING,
    guards: RewriteGuards | None = None,
) -> Vetted:
    """Accept the rewritten prompt in `output`, or say why not.

    Checks run cheapest first; the length is only looked at for an otherwise usable prompt.
    `seen` is read, not updated: the caller decides which accepted texts count as seen.
    `examples` are those the rewrite's request showed (PMPO's hard case, APE's
    demonstrations; none for a paraphrase): `guards` (None: the defaults) reject a prompt that
    leaks one of them or is mostly their answer options (pmpo/guards.py). `shared` is the
    task's shared wording (`shared_wording` of its training inputs), which copies no example.
    """
    text = extract_prompt(output)
    if text is None:
        return Vetted(None, "no_prompt_tag")
    if not text:
        return Vetted(None, "empty")
    if text == current_prompt.strip():
        return Vetted(None, "unchanged")
    if text in {previous.strip() for previous in seen}:
        return Vetted(None, "duplicate")
    if reason := guard_rejection(text, examples, guards or RewriteGuards(), shared):
        return Vetted(None, reason)
    if count_tokens(text) > max_prompt_tokens:
        return Vetted(None, "too_long")
    return Vetted(text, "")
