"""Ask a model for a better prompt, and decide whether what it wrote can be used.

PMPO improves a prompt by showing a model one hard example, the loss analysis of the
prompt's parts, and the prompt itself, then asking for a rewrite. Models answer in free text,
often malformed or merely repeating the prompt, so every output is vetted before it costs a
scoring pass. The reasons for rejection are a fixed vocabulary so runs can report them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Literal

from pmpo_ray.pmpo.guards import RewriteGuards, guard_rejection
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
    segmentation). `sampling` sets generation_row's n, temperature, top_p and seed; those it
    leaves out are GREEDY's."""
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


def complete_prefilled(prefill: str, output: str, finished: bool) -> str:
    """The model's whole answer: the prefill it continued, plus a closing tag when the model
    ended its answer (EOS) inside an opened pair; a cut-off answer stays unclosed (rejected)."""
    text = prefill + output
    if prefill and finished and "</prompt>" not in output.lower():
        text += "</prompt>"
    return text


def vet_rewrite(
    output: str,
    *,
    current_prompt: str,
    seen: set[str],
    max_prompt_tokens: int,
    count_tokens: Callable[[str], int],
    example: Example | None = None,
    guards: RewriteGuards | None = None,
) -> Vetted:
    """Accept the rewritten prompt in `output`, or say why not.

    Checks run cheapest first; the length is only looked at for an otherwise usable prompt.
    `seen` is read, not updated: the caller decides which accepted texts count as seen.
    `example` is the hard case the rewrite was written from: with it, `guards` (None: the
    defaults) reject a prompt that leaks it or is mostly its answer options (pmpo/guards.py).
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
    if reason := guard_rejection(text, example, guards or RewriteGuards()):
        return Vetted(None, reason)
    if count_tokens(text) > max_prompt_tokens:
        return Vetted(None, "too_long")
    return Vetted(text, "")
