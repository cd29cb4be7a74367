"""Read (input, target) examples from a file, with errors that name the file and row.

Two layouts: JSON Lines with one `{"input": ..., "target": ...}` object per line, and the BBH
JSON layout `{"examples": [{"input": ..., "target": ...}, ...]}`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pmpo_ray.requests import Example

REQUIRED_FIELDS = ("input", "target")


class DataError(ValueError):
    pass


def load_examples(path: Path | str) -> list[Example]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DataError(f"{path}: cannot read ({reason})") from None
    records = _bbh_records(path, text) if path.suffix == ".json" else _jsonl_records(path, text)
    if not records:
        raise DataError(f"{path}: no examples")
    return [_example(path, row, record) for row, record in records]


def _jsonl_records(path: Path, text: str) -> list[tuple[int, object]]:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((line_number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {line_number} is not valid JSON ({error.msg})") from None
    return records


def _bbh_records(path: Path, text: str) -> list[tuple[int, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise DataError(f"{path}: expected an object with an 'examples' list (BBH layout)")
    return list(enumerate(data["examples"], start=1))


def _example(path: Path, row: int, record: object) -> Example:
    where = f"{path}: row {row}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object, got {type(record).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise DataError(f"{where}: field '{name}' missing (has {sorted(record)})")
        if not isinstance(record[name], (str, int, float)) or isinstance(record[name], bool):
            raise DataError(f"{where}: field '{name}' must be text")
    target = str(record["target"])
    if not target.strip():
        raise DataError(f"{where}: field 'target' is empty")
    example_id = str(record.get("id", row))
    return Example(example_id=example_id, input=str(record["input"]), target=target)
