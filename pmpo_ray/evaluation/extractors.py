"""Pull the final answer out of a generated text, for held-out accuracy.

Three ways to match, one per kind of target:
- "exact": BBH free-form answers ("True", "24", "apple banana cherry", "(( [ ] ))"), compared
  after normalizing case, whitespace, markdown and trailing punctuation; a numeric gold answer
  is compared as a number, so "So the answer is 8 instruments." counts for "8".
- "option": multiple choice; the answer is one of `options` ("(A)"-style labels or texts
  such as "Yes"), returned exactly as given there.
- "number": GSM8K-style final numbers; "$1,234.50" == "1234.5", "18.0" == "18".

Where the model commits matters more than what it mentions while reasoning, so the text after
the last explicit answer marker ("answer is", "Answer:", "####", \\boxed{}) wins. Without a
marker only the end of the output counts, and only when that end looks finished: a generation
cut off mid-sentence, or one that names no answer, gives None rather than a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation

MATCH_KINDS = ("exact", "option", "number")

# "answer is" / "Answer:" anywhere; "####" only before a number, so markdown headings don't count.
_MARKER = re.compile(r"answer\s*(?:is(?![\w'])|:)|####(?=\s*[-$\d])", re.IGNORECASE)
_MARKDOWN = re.compile(r"\*\*|__|`")
_CLAUSE_END = re.compile(r"(?<=\S)[.!?;](?=\s|$)|,\s")
_FINISHED_LINE = re.compile(r"[.!?)\]}>\"']$")
_UNFINISHED_LINE = re.compile(r"[,:;=+*/(-]$")
# A final line this short is an answer on its own ("18 eggs", "B) 21", "yes"), not a cut-off.
_SHORT_LINE_WORDS = 3
_LEADING_MARKER = re.compile(r"^(?:so,?\s+)?(?:the\s+)?(?:final\s+)?answer\s*(?:is\b|:)\s*:?", re.I)
_LABEL_OPTION = re.compile(r"^\(?([A-Z])\)?$")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def extract_answer(
    output: str, match: str, options: Sequence[str] = (), complete: bool = False
) -> str | None:
    """The answer `output` commits to, or None when it commits to none. `complete` says the
    model stopped on its own (not cut off), so its last line is final however it ends."""
    if match == "option":
        return _extract_option(output, _checked_options(options), complete)
    return _extractor(match)(output, complete)


def is_correct(
    output: str, gold: str, match: str, options: Sequence[str] = (), complete: bool = False
) -> tuple[str | None, bool]:
    """(extracted answer, whether it matches `gold`)."""
    if match == "option":
        options = _checked_options(options)
        if gold not in options:
            raise ValueError(f"gold answer {gold!r} is none of the options {list(options)}")
        extracted = _extract_option(output, options, complete)
        return extracted, extracted == gold
    gold_number = parse_number(gold)
    if match == "number" and gold_number is None:
        raise ValueError(f"gold answer {gold!r} is not a number (match 'number')")
    if gold_number is not None and match in ("number", "exact"):
        extracted = _extract_number(output, complete)
        return extracted, extracted is not None and Decimal(extracted) == gold_number
    extracted = _extractor(match)(output, complete)
    return extracted, extracted is not None and normalize(extracted) == normalize(gold)


def normalize(text: str) -> str:
    """The form "exact" compares: case-folded, markdown and trailing punctuation dropped."""
    return " ".join(_clean(text).casefold().split())


def parse_number(text: str) -> Decimal | None:
    """`text` as a number when it is one ("$1,234.50", "18.0", "-3", "50%"), else None."""
    bare = _THOUSANDS.sub("", text.strip().replace("$", "").replace("\u2212", "-"))
    bare = bare.removesuffix("%").strip()
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", bare):
        return None
    try:
        return Decimal(bare)
    except InvalidOperation:
        return None


# ----- the three extractors ----------------------------------------------------------------


def _extractor(match: str) -> Callable[[str, bool], str | None]:
    extractors = {"exact": _extract_exact, "number": _extract_number}
    if match not in MATCH_KINDS:
        raise ValueError(f"unknown answer match {match!r}; expected one of {list(MATCH_KINDS)}")
    return extractors[match]


def _extract_exact(output: str, complete: bool = False) -> str | None:
    text = _strip_markdown(output)
    for segment in _marked_segments(text):
        if answer := _clean(_first_clause(segment)):
            return answer
    line = _final_line(text, allow_single_line=True, complete=complete)
    return (_clean(_first_clause(line)) or None) if line is not None else None


def _extract_number(output: str, complete: bool = False) -> str | None:
    text = _THOUSANDS.sub("", _strip_markdown(output).replace("$", "").replace("\u2212", "-"))
    for segment in _marked_segments(text):
        # "Answer: 5 + 13 = 18 eggs" commits to what follows the last "=".
        numbers = _NUMBER.findall(segment.rsplit("=", 1)[-1])
        if numbers:
            return _canonical(numbers[0])
    line = _final_line(text, complete=complete)
    numbers = _NUMBER.findall(line) if line is not None else []
    return _canonical(numbers[-1]) if numbers else None


def _extract_option(output: str, options: Sequence[str], complete: bool = False) -> str | None:
    text = _strip_markdown(output).strip()
    patterns = [(_option_pattern(option), option) for option in options]
    for segment in _marked_segments(text):
        if found := _mentions(segment.strip(), patterns, leading=True):
            return found[0][2]
    # An answer that opens with an option ("(B) The tractor is the oldest") and names no
    # other commits to it; a bare letter does not count here ("A man walks...").
    mentioned = _mentions(text, patterns)
    if mentioned and mentioned[0][0] == 0 and len({hit[2] for hit in mentioned}) == 1:
        return mentioned[0][2]
    line = _final_line(text, complete=complete)
    if line is None:
        return None
    if bare := _mentions(line, patterns, leading=True, whole=True):
        return bare[0][2]
    found = _mentions(text, patterns)
    return found[-1][2] if found else None


# ----- options -----------------------------------------------------------------------------


def _checked_options(options: Sequence[str]) -> Sequence[str]:
    if isinstance(options, str) or not options:
        raise ValueError(f"match 'option' needs a list of options, got {options!r}")
    return options


def _option_pattern(option: str) -> tuple[re.Pattern, re.Pattern | None]:
    """(a mention anywhere, the option alone at the start of an answer) for one option."""
    if label := _LABEL_OPTION.match(option.strip()):
        letter = label.group(1)
        anywhere = rf"\({letter}\)|(?<![\w(]){letter}\)|(?i:\b(?:option|choice))\s+{letter}\b"
        # A bare letter counts only where an answer starts, since "A" is also a word.
        return re.compile(anywhere), re.compile(rf"\(?{letter}(?![\w'])")
    words = r"\s+".join(re.escape(word) for word in option.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE), None


def _mentions(
    text: str, patterns, leading: bool = False, whole: bool = False
) -> list[tuple[int, int, str]]:
    """(start, -length, option) of each mention, in reading order; longest first at a tie.

    `leading` also accepts a bare label at the start of `text`; `whole` accepts nothing else.
    """
    found = []
    for (anywhere, bare), option in patterns:
        if leading and bare is not None and (hit := bare.match(text)):
            if not whole or not text[hit.end() :].strip(" .:)"):
                found.append((0, -len(hit.group()), option))
        if not whole:
            found += [(m.start(), -len(m.group()), option) for m in anywhere.finditer(text)]
    return sorted(found)


# ----- where the answer is -----------------------------------------------------------------


def _strip_markdown(text: str) -> str:
    return _MARKDOWN.sub("", text)


def _marked_segments(text: str) -> list[str]:
    """What follows each answer marker, the most explicit and latest first."""
    segments = []
    for marker in reversed(list(_MARKER.finditer(text))):
        rest = text[marker.end() :].lstrip(" \t:")
        # "Answer:" on its own line puts the answer on the next non-empty line.
        lines = [line for line in rest.splitlines()[:3] if line.strip()]
        if lines:
            segments.append(lines[0])
    boxed = _last_boxed(text)
    return ([boxed] if boxed else []) + segments


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return text[begin:index]
    return None


def _final_line(text: str, allow_single_line: bool = False, complete: bool = False) -> str | None:
    """The last non-empty line when it looks like a finished answer (or the model stopped on
    its own: `complete`), else None (cut off)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    if complete:
        return last
    if _UNFINISHED_LINE.search(last):
        return None
    finished = _FINISHED_LINE.search(last) or len(last.split()) <= _SHORT_LINE_WORDS
    return last if finished or (allow_single_line and len(lines) == 1) else None


def _first_clause(text: str) -> str:
    return _CLAUSE_END.split(text, maxsplit=1)[0]


def _clean(text: str) -> str:
    text = _LEADING_MARKER.sub("", _strip_markdown(text).strip())
    text = text.strip().strip("$\"'").strip()
    return text.rstrip(".,;:!?").strip()


def _canonical(number: str) -> str:
    """Plain digits, never an exponent: "18.0" -> "18", "1234.50" -> "1234.5"."""
    value = Decimal(number).normalize()
    return format(value, "f") if value != 0 else "0"
