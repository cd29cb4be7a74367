"""Map a dataset's own record layout (BBH, GSM8K, AQuA-RAT, plain records) onto Examples.

Layouts also fill `Example.answer` where held-out accuracy checks something other than the
scored target: GSM8K scores the whole worked solution but checks only its final number.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.format_specs import FORMAT_SPECS, format_spec
from pmpo_ray.tasks.formats import (
    CONVERTERS,
    FEW_OPTIONS,
    DataError,
    example_id,
    listed_input,
    text_field,
)

GSM8K_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
AQUA_OPTION = re.compile(r"^\s*\(?([A-Z])\)\s*(.*?)\s*$", re.DOTALL)

Converter = Callable[[dict, int, str], Example]


def guess_layout(record: dict) -> str:
    """The layout the fields of one record point to; `records` when none fits."""
    fields = set(record)
    if {"question", "options", "correct"} <= fields:
        return "aqua"
    if {"question", "answer"} <= fields and "options" not in fields:
        return "gsm8k"
    if {"input", "target"} <= fields:
        return "bbh"
    return "records"


def rename_columns(record: dict, columns: dict[str, str], where: str) -> dict:
    """The record with each mapped file column renamed to the format's field."""
    if not columns:
        return record
    for field, column in columns.items():
        if column not in record:
            raise DataError(
                f"{where}: column {column!r} (mapped to field {field!r} by `columns`) missing; "
                f"the data has columns {sorted(record)}",
                f"column {column!r} missing",
            )
    # The source columns go, so `layout: auto` sees the format's fields and not the file's.
    kept = {k: v for k, v in record.items() if k not in columns.values()}
    return kept | {field: record[column] for field, column in columns.items()}


def convert_records(
    records: Sequence[tuple[int, object]],
    format: str,
    layout: str,
    columns: dict[str, str],
    source: str,
    skipped: Counter[str] | None = None,
) -> tuple[list[Example], str]:
    """Examples from (row, record) pairs, and the layout used (`auto` resolved on row one).

    An invalid row is an error, unless `skipped` is given (`invalid_rows: skip`): then it is
    left out and counted there under its reason."""
    renamed = []
    for row, record in records:
        where = f"{source}: row {row}"
        with _invalid_row(skipped):
            if not isinstance(record, dict):
                raise DataError(
                    f"{where}: expected an object, got {type(record).__name__}", "not an object"
                )
            renamed.append((row, rename_columns(record, columns, where)))
    if layout == "auto":
        layout = guess_layout(renamed[0][1]) if renamed else "records"
    convert = layout_converter(layout, format, source)
    examples = []
    for row, record in renamed:
        with _invalid_row(skipped):
            examples.append(convert(record, row, f"{source}: row {row}"))
    return examples, layout


@contextmanager
def _invalid_row(skipped: Counter[str] | None) -> Iterator[None]:
    """A row's problem (a DataError with a reason) is counted in `skipped` when given, else
    raised; a problem of the whole file is always raised."""
    try:
        yield
    except DataError as error:
        if skipped is None or error.reason is None:
            raise
        skipped[error.reason] += 1


def layout_converter(layout: str, format: str, source: str) -> Converter:
    allowed = {
        "bbh": ("supervised", "multiple_choice"),
        "gsm8k": ("supervised",),
        "aqua": ("supervised", "multiple_choice"),
        "records": tuple(FORMAT_SPECS),  # each format's own fields
    }
    if layout not in allowed:
        raise DataError(f"{source}: field 'layout' is {layout!r}; known: {sorted(allowed)}")
    if format not in allowed[layout]:
        raise DataError(
            f"{source}: field 'format' is {format!r} but layout {layout!r} only gives "
            f"{' or '.join(allowed[layout])} examples"
        )
    if layout == "gsm8k":
        return gsm8k_example
    if layout == "aqua":
        return aqua_multiple_choice if format_spec(format).has_options else aqua_supervised
    return CONVERTERS[format]


def gsm8k_example(record: dict, row: int, where: str) -> Example:
    """The worked solution is the target; the number after '####' is the answer checked."""
    question = text_field(record, "question", where)
    solution = text_field(record, "answer", where)
    if "####" not in solution:
        raise DataError(
            f"{where}: field 'answer' has no final answer after '####' (layout gsm8k; for other "
            "question/answer data set `layout: records` and `columns`)",
            "field 'answer' has no '####' final answer",
        )
    final = solution.rsplit("####", 1)[1].strip()
    number = final.replace(",", "")
    if not GSM8K_NUMBER.fullmatch(number):
        raise DataError(
            f"{where}: field 'answer' ends in {final!r} after '####', not a number",
            "final answer after '####' is not a number",
        )
    return Example(example_id(record, row), question, solution, answer=number)


def aqua_multiple_choice(record: dict, row: int, where: str) -> Example:
    user_input, answers, gold = _aqua_question(record, where)
    rejected = tuple(a for a in answers if a != gold)
    return Example(example_id(record, row), user_input, gold, rejected, answer=gold)


def aqua_supervised(record: dict, row: int, where: str) -> Example:
    """The rationale, closed by the label, so a generated answer ends the same checkable way."""
    user_input, _, gold = _aqua_question(record, where)
    rationale = text_field(record, "rationale", where).rstrip()
    target = f"{rationale}\nThe answer is {gold}."
    return Example(example_id(record, row), user_input, target, answer=gold)


def _aqua_question(record: dict, where: str) -> tuple[str, list[str], str]:
    """The question with '(A) text' option lines, every option's label, and the correct one."""
    question = text_field(record, "question", where)
    labels, texts = _aqua_options(record.get("options"), where)
    correct = text_field(record, "correct", where)
    label = correct.strip().strip("()").strip().upper()
    if label not in labels:
        raise DataError(
            f"{where}: field 'correct' {correct!r} matches no option label {labels}",
            "field 'correct' matches no option",
        )
    return listed_input(question, labels, texts), [f"({x})" for x in labels], f"({label})"


def _aqua_options(options: object, where: str) -> tuple[list[str], list[str]]:
    if not isinstance(options, (list, tuple)) or len(options) < 2:
        raise DataError(
            f"{where}: field 'options' must be a list of at least two options", FEW_OPTIONS
        )
    labels, texts = [], []
    for option in options:
        match = AQUA_OPTION.match(option) if isinstance(option, str) else None
        if match is None:
            raise DataError(
                f"{where}: field 'options' has {option!r}, expected 'A)text'",
                "an option is not 'A)text'",
            )
        labels.append(match.group(1))
        texts.append(match.group(2))
    if len(set(labels)) != len(labels):
        raise DataError(
            f"{where}: field 'options' repeats a label: {labels}", "options repeat a label"
        )
    return labels, texts
