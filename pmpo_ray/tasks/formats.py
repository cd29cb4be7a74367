"""Turn raw records into Examples for each task format, with errors naming file, row, field.

Multiple choice keeps every wrong option as a rejected answer, so the same task can be
optimized with plain cross-entropy on the correct option or with the preference loss.
"""

from __future__ import annotations

import re

from pmpo_ray.tasks.example import Example

OPTION_LABEL = re.compile(r"^\(([A-Z])\)\s")
OPTION_BULLET = re.compile(r"^-\s+(.+?)\s*$")
FEW_OPTIONS = "field 'options' is not a list of two or more"


class DataError(ValueError):
    """Bad data; the message names file, row and field. A problem of one row also has a
    `reason`: the same problem without file, row or values, so skipped rows count by kind."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


def text_field(record: dict, name: str, where: str, allow_empty: bool = False) -> str:
    if name not in record:
        raise DataError(
            f"{where}: field '{name}' missing (has {sorted(record)})", f"field '{name}' missing"
        )
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: field '{name}' must be text", f"field '{name}' is not text")
    value = str(value)
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field '{name}' is empty", f"field '{name}' is empty")
    return value


def example_id(record: dict, row: int) -> str:
    return str(record.get("id", row))


def supervised_example(record: dict, row: int, where: str) -> Example:
    return Example(
        example_id=example_id(record, row),
        input=text_field(record, "input", where, allow_empty=True),
        target=text_field(record, "target", where),
    )


def multiple_choice_example(record: dict, row: int, where: str) -> Example:
    """BBH layout (options inside `input`) or {question, options, answer}."""
    if "question" in record:
        return _listed_options_example(record, row, where)
    user_input = text_field(record, "input", where)
    target = text_field(record, "target", where).strip()
    answers = embedded_answers(user_input)
    if not answers:
        raise DataError(
            f"{where}: no options found in field 'input' (expected '(A) ...' or '- ...' lines)",
            "no options in field 'input'",
        )
    if target not in answers:
        raise DataError(
            f"{where}: target {target!r} matches no option of {answers}",
            "target matches no option",
        )
    rejected = tuple(a for a in answers if a != target)
    return Example(example_id(record, row), user_input, target, rejected)


def embedded_answers(user_input: str) -> list[str]:
    """The answers a BBH question allows: '(A)'-style labels, or the text of '- Yes' bullets."""
    labels, bullets = [], []
    for line in user_input.splitlines():
        if match := OPTION_LABEL.match(line.strip()):
            labels.append(f"({match.group(1)})")
        elif match := OPTION_BULLET.match(line.strip()):
            bullets.append(match.group(1))
    return labels or bullets


def _listed_options_example(record: dict, row: int, where: str) -> Example:
    question = text_field(record, "question", where)
    options = record.get("options")
    if not isinstance(options, list) or len(options) < 2:
        raise DataError(
            f"{where}: field 'options' must be a list of at least two options", FEW_OPTIONS
        )
    labels = [chr(ord("A") + i) for i in range(len(options))]
    answer = text_field(record, "answer", where).strip()
    correct = _option_index(answer, labels, [str(o) for o in options])
    if correct is None:
        raise DataError(
            f"{where}: answer {answer!r} matches no option label {labels} or text",
            "answer matches no option",
        )
    user_input = listed_input(question, labels, [str(o) for o in options])
    answers = [f"({label})" for label in labels]
    rejected = tuple(a for i, a in enumerate(answers) if i != correct)
    return Example(example_id(record, row), user_input, answers[correct], rejected)


def listed_input(question: str, labels: list[str], options: list[str]) -> str:
    """A question with its options as '(A) text' lines, the layout BBH uses for its own."""
    lines = [f"({label}) {option}" for label, option in zip(labels, options)]
    return question + "\nOptions:\n" + "\n".join(lines)


def _option_index(answer: str, labels: list[str], options: list[str]) -> int | None:
    bare = answer.strip("() ").upper()
    if bare in labels:
        return labels.index(bare)
    if answer in options:
        return options.index(answer)
    return None


def preference_example(record: dict, row: int, where: str) -> Example:
    rejected = record.get("rejected")
    if isinstance(rejected, str):
        rejected = [rejected]
    if not isinstance(rejected, list) or not rejected:
        raise DataError(
            f"{where}: field 'rejected' must be a text or a non-empty list of texts",
            "field 'rejected' is not a text or a list of texts",
        )
    rejected_texts = tuple(text_field({"rejected": r}, "rejected", where) for r in rejected)
    return Example(
        example_id=example_id(record, row),
        input=text_field(record, "instruction", where),
        target=text_field(record, "chosen", where),
        rejected=rejected_texts,
    )


CONVERTERS = {
    "supervised": supervised_example,
    "multiple_choice": multiple_choice_example,
    "preference": preference_example,
}
