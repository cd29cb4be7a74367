"""Reject rewrites that lower the training loss by cheating instead of instructing.

The rewriter sees one hard example and its reference answer, and a small one often pastes
them into the new prompt: a stretch of the example's input, "The answer is (D).", or a bare
list of the answer options. Such a prompt primes the answer's tokens, so it can beat the
incumbent on the training split while teaching nothing about the task; these checks reject
it before it costs a scoring pass. They are plain text rules, tuned on the default model's
real rewrites (tests/test_guards.py keeps some).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from pydantic import Field

from pmpo_ray.config import FrozenConfig
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.formats import OPTION_LABEL


class RewriteGuards(FrozenConfig):
    """Which degenerate rewrites of a hard example `vet_rewrite` rejects."""

    leaks_example: bool = Field(
        True,
        description="Reject a rewrite that copies a long verbatim span of the hard example's "
        "input, states its reference answer, or gives one of its options (for a numeric "
        "answer: any number) as the answer.",
    )
    min_copied_words: int = Field(
        8,
        ge=3,
        description="The shortest run of consecutive words of the example's input that counts "
        "as copied; shorter runs are mostly the task's stock phrases ('the following "
        "sentence plausible').",
    )
    lists_options: bool = Field(
        True, description="Reject a rewrite that is mostly a list of the answer options."
    )
    max_option_share: float = Field(
        0.4,
        gt=0,
        le=1,
        description="The share of the prompt's words that are option labels or option texts "
        "(outside 'X or Y' alternatives) above which the prompt counts as mostly options. "
        "The default model's real rewrites: at most 0.11 when not listing options, 0.43 for "
        "a task sentence over the example's three options.",
    )


# Words compare lower-cased; punctuation and whitespace only separate them ("(D)" is "d").
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_LABEL = re.compile(r"\([A-Z]\)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LIST_MARKER = re.compile(r"^[ \t]*\d+[.)]", re.MULTILINE)
# Where a prompt gives an answer: after "The answer is", "Answer:", "Output:", or an answer
# word and "is"/"be" a few words later in the same sentence ("The correct answer to this
# problem is", "The answer to this prompt would be"). Not "=": worked examples use it.
_ANSWER_CUE = re.compile(
    r"\b(?:answers?|output|result|solution)\b(?:[ \t]+[^\s.!?]+){0,5}?[ \t]*"
    r"(?:\bis\b|\bbe\b|:)[\s\"'*`(\[:]*$",
    re.IGNORECASE,
)
_LINE_START = re.compile(r"(?:^|\n)[ \t\"'`(\[]*$")  # no bullets: "- Yes" is a list item
_LINE_END = re.compile(r"[ \t\"'`)\].!]*(?:\n|$)")
# Named among alternatives: "yes or no", "True/False", "True, False, or ...".
_OR_BEFORE = re.compile(r"(?:\bor|\bnor|/)[\s\"'(]*$", re.IGNORECASE)
_OR_AFTER = re.compile(
    r"[\s\"')]*(?:,[\s\"'(]*[\w()]+[\s\"')]*)*,?\s*(?:\bor\b|\bnor\b|/)", re.IGNORECASE
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def leak_of(prompt: str, example: Example, min_copied_words: int) -> str | None:
    """What of `example` the prompt gives away, or None when it gives nothing away.

    - A run of `min_copied_words` or more consecutive words of the example's input (case,
      punctuation and spacing ignored). Wording every input of the task shares (BBH's
      "If you follow these instructions, do you return to the starting point?") counts too:
      one example cannot tell it apart, and a prompt should describe the task, not paste it.
    - The reference answer (`gold_answer`). A label like "(D)" or an answer of several words
      counts wherever it appears; a one-word answer ("No", "yes", "8") only where the prompt
      gives it as the answer: after an answer cue ("The answer is no.", "Answer: 8",
      "Output:\nYes") or alone on a line. Such words are everywhere in ordinary
      instructions ("there is no answer", "Take 8 steps", "1. ..."). It does not count
      inside alternatives ("yes or no", "True/False", "(A), (B) or (C)"), nor, in a
      multiple-choice example, when every distractor appears too ("Answer Yes or No").
    - Any other answer after an answer cue, outside alternatives: a distractor or "(X)"
      label of a multiple-choice example ("The correct answer is\n(D) Facts" won a round
      with the reference (A)), or any number when the reference is one ("The answer is
      13"). A prompt that fixes the answer is as degenerate when the answer is wrong.
    An answer without letters or digits (Dyck brackets) is not checked.
    """
    copied = copied_words(words(prompt), words(example.input))
    if copied >= min_copied_words:
        return f"copies {copied} words of the input"
    answer = example.gold_answer.strip()
    anywhere = _LABEL.fullmatch(answer) is not None or len(words(answer)) > 1
    named_all = example.rejected and all(mentions(prompt, o) for o in example.rejected)
    if not named_all and gives(prompt, answer, anywhere=anywhere, own_line=True):
        return f"states the answer {answer!r}"
    if example.rejected:
        others = [*example_options(example), *_LABEL.findall(prompt)]
    else:
        others = _NUMBER.findall(prompt) if _NUMBER.fullmatch(answer) else []
    for other in dict.fromkeys([answer, *others]):
        if gives(prompt, other, anywhere=False, own_line=False):
            return f"states the answer {other!r}"
    return None


def copied_words(prompt_words: Sequence[str], source_words: Sequence[str]) -> int:
    """The length of the longest run of consecutive words found in both sequences."""
    starts: dict[str, list[int]] = {}
    for index, word in enumerate(source_words):
        starts.setdefault(word, []).append(index)
    longest = 0
    for i, word in enumerate(prompt_words):
        for j in starts.get(word, ()):
            length = 1
            while (
                i + length < len(prompt_words)
                and j + length < len(source_words)
                and prompt_words[i + length] == source_words[j + length]
            ):
                length += 1
            longest = max(longest, length)
    return longest


def gives(prompt: str, answer: str, *, anywhere: bool, own_line: bool) -> bool:
    """Whether `answer` occurs in `prompt` outside alternatives and, unless `anywhere`,
    after an answer cue or (with `own_line`) alone on a line."""
    for match in _outside_alternatives(prompt, _option_pattern(answer)):
        before, after = prompt[: match.start()], prompt[match.end() :]
        if anywhere or _ANSWER_CUE.search(before):
            return True
        if own_line and _LINE_START.search(before) and _LINE_END.match(after):
            return True
    return False


def mentions(prompt: str, option: str) -> bool:
    """Whether `option` appears in `prompt`: a label literally, a text as whole words."""
    pattern = _option_pattern(option)
    return bool(pattern and pattern.search(prompt))


def _outside_alternatives(text: str, pattern: re.Pattern[str] | None) -> Iterator[re.Match]:
    """The matches of `pattern` not named among alternatives ("yes or no", "(A), (B) or
    (C)", "True/False"): those are format instructions, not answers or option lists."""
    for match in pattern.finditer(text) if pattern else ():
        if not (_OR_BEFORE.search(text, 0, match.start()) or _OR_AFTER.match(text, match.end())):
            yield match


def _option_pattern(option: str) -> re.Pattern[str] | None:
    option = option.strip()
    if _LABEL.fullmatch(option):
        return re.compile(re.escape(option))
    option_words = words(option)
    if not option_words:
        return None
    body = r"\W+".join(re.escape(word) for word in option_words)
    return re.compile(rf"(?<![\w'])(?:{body})(?![\w'])", re.IGNORECASE)


def option_share(prompt: str, options: Sequence[str]) -> float:
    """The share of the prompt's words inside a mention of an option or of any "(X)" label,
    outside alternatives ("Answer Yes or No." has none); list numbers ("1.", "2)") at line
    starts are not words here."""
    text = _LIST_MARKER.sub(lambda marker: " " * len(marker.group()), prompt)
    spans = []
    for pattern in (_LABEL, *map(_option_pattern, options)):
        spans += [match.span() for match in _outside_alternatives(text, pattern)]
    covered = bytearray(len(text))
    for start, end in spans:
        covered[start:end] = b"\1" * (end - start)
    starts = [word.start() for word in _WORD.finditer(text.lower())]
    return sum(covered[start] for start in starts) / len(starts) if starts else 0.0


def mostly_options(prompt: str, options: Sequence[str], max_share: float) -> bool:
    """True when option words are more than `max_share` of the prompt's words (and it has
    at least one): "(A) (B) (C) (D)", "- Yes\\n- No"."""
    share = option_share(prompt, options)
    return share > 0 and share > max_share


def example_options(example: Example) -> tuple[str, ...]:
    """The answers `example` allows: its reference and distractors, and the text after each
    "(A)" label in its input, so that "(A) red\\n(B) blue" is all options."""
    texts = []
    for line in example.input.splitlines():
        if label := OPTION_LABEL.match(line.strip()):
            texts.append(line.strip()[label.end() :].strip())
    return (example.gold_answer, *example.rejected, *filter(None, texts))


def guard_rejection(prompt: str, example: Example | None, guards: RewriteGuards) -> str:
    """Why the rewrite is rejected: "leaks_example" or "lists_options" (checked in that
    order), or "" when it passes; without the example it was written from nothing is checked."""
    if example is None:
        return ""
    if guards.leaks_example and leak_of(prompt, example, guards.min_copied_words):
        return "leaks_example"
    if guards.lists_options and mostly_options(
        prompt, example_options(example), guards.max_option_share
    ):
        return "lists_options"
    return ""
