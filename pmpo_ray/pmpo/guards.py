"""Reject rewrites that lower the training loss by cheating instead of instructing.

The rewriter sees training examples and their reference answers (PMPO's one hard example,
APE's few demonstrations), and a small one often pastes them into the new prompt: a stretch of
an example's input, "The answer is (D).", or a bare list of the answer options. Such a prompt
primes the answer's tokens, so it can beat the incumbent on the training split while teaching
nothing about the task; these checks reject it before it costs a scoring pass, against every
example its request showed. They are plain text rules, tuned on the default model's real
rewrites (tests/test_guards.py keeps some).

Wording most of the task's training inputs share (BBH navigate's "If you follow these
instructions, do you return to the starting point?") is the task's question, not an example's
content: `shared_wording` finds it once per task, and a copied run counts only its other words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence

from pydantic import Field

from pmpo_ray.config import FrozenConfig
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.formats import OPTION_LABEL


class RewriteGuards(FrozenConfig):
    """Which degenerate rewrites of the examples its request showed `vet_rewrite` rejects."""

    leaks_example: bool = Field(
        True,
        description="Reject a rewrite that copies a long verbatim span of a shown example's "
        "input, states its reference answer, or gives one of its options (for a numeric "
        "answer: any number) as the answer.",
    )
    min_copied_words: int = Field(
        8,
        ge=3,
        description="The shortest run of consecutive words of an example's input that counts "
        "as copied, not counting the task's shared wording; shorter runs are mostly the task's "
        "stock phrases ('the following sentence plausible').",
    )
    shared_wording_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Wording (runs of 4 words) found in more than this share of the task's "
        "training inputs, and in at least 3 of them, is the task's shared question (BBH "
        "navigate's 'If you follow these instructions, do you return to the starting point?'), "
        "not copied example content; 1 counts every word as the example's own.",
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


# Shared wording is found as runs of this many words: 3-word runs catch stock phrases
# ("take 1 step"), while the BBH tasks' question stems are far longer than 4 words.
SHARED_RUN = 4
# Fewer inputs than this sharing a run cannot tell a task's question from chance.
MIN_SHARING_INPUTS = 3

# The word runs (SHARED_RUN words each) most of a task's training inputs share.
SharedWording = frozenset[tuple[str, ...]]
NO_SHARED_WORDING: SharedWording = frozenset()


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shared_wording(inputs: Sequence[str], share: float) -> SharedWording:
    """The runs of SHARED_RUN consecutive words found in more than `share` of `inputs` and in
    at least MIN_SHARING_INPUTS of them: the task's shared question, computed once per task
    from its training inputs. `share` 1 (or fewer inputs) finds none."""
    counts: Counter[tuple[str, ...]] = Counter()
    for text in inputs:
        text_words = words(text)
        counts.update({tuple(text_words[i : i + SHARED_RUN]) for i in _run_starts(text_words)})
    return frozenset(
        run
        for run, count in counts.items()
        if count > share * len(inputs) and count >= MIN_SHARING_INPUTS
    )


def _run_starts(text_words: Sequence[str]) -> range:
    return range(len(text_words) - SHARED_RUN + 1)


def shared_positions(text_words: Sequence[str], shared: SharedWording) -> list[bool]:
    """For each word, whether it lies inside a run of `shared` wording."""
    inside = [False] * len(text_words)
    for i in _run_starts(text_words):
        if tuple(text_words[i : i + SHARED_RUN]) in shared:
            inside[i : i + SHARED_RUN] = [True] * SHARED_RUN
    return inside


def leak_of(
    prompt: str,
    example: Example,
    min_copied_words: int,
    shared: SharedWording = NO_SHARED_WORDING,
) -> str | None:
    """What of `example` the prompt gives away, or None when it gives nothing away.

    - A run of consecutive words of the example's input (case, punctuation and spacing
      ignored) with `min_copied_words` or more words outside the task's `shared` wording
      (`shared_wording`): pasting the task's question ("If you follow these instructions, do
      you return to the starting point?") copies no example, while pasting this example's
      instructions ("Take 6 steps. Take 8 steps. ...") around it still does.
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
    input_words = words(example.input)
    copied = copied_words(words(prompt), input_words, shared_positions(input_words, shared))
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


def copied_words(
    prompt_words: Sequence[str], source_words: Sequence[str], shared_at: Sequence[bool] = ()
) -> int:
    """The most words of a run of consecutive words found in both sequences, not counting the
    source words `shared_at` marks (they neither count nor break the run)."""
    starts: dict[str, list[int]] = {}
    for index, word in enumerate(source_words):
        starts.setdefault(word, []).append(index)
    own = [not inside for inside in shared_at] if shared_at else [True] * len(source_words)
    longest = 0
    for i, word in enumerate(prompt_words):
        for j in starts.get(word, ()):
            if i and j and prompt_words[i - 1] == source_words[j - 1]:
                continue  # inside a longer run, counted from that run's start
            length = counted = 0
            while (
                i + length < len(prompt_words)
                and j + length < len(source_words)
                and prompt_words[i + length] == source_words[j + length]
            ):
                counted += own[j + length]
                length += 1
            longest = max(longest, counted)
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


def guard_rejection(
    prompt: str,
    examples: Sequence[Example],
    guards: RewriteGuards,
    shared: SharedWording = NO_SHARED_WORDING,
) -> str:
    """Why the rewrite is rejected: "leaks_example" (of any of `examples`, those its request
    showed) or "lists_options" (of all their options together), checked in that order, or ""
    when it passes; without examples nothing is checked. `shared`: the task's shared wording
    (`shared_wording` of its training inputs), which copies no example."""
    if not examples:
        return ""
    if guards.leaks_example and any(
        leak_of(prompt, example, guards.min_copied_words, shared) for example in examples
    ):
        return "leaks_example"
    options = dict.fromkeys(option for example in examples for option in example_options(example))
    if guards.lists_options and mostly_options(prompt, tuple(options), guards.max_option_share):
        return "lists_options"
    return ""
