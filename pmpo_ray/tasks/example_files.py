"""Read records from an examples file, with errors that name the file and row.

Two layouts: JSON Lines (one object per line) and the BBH JSON layout
`{"examples": [...]}`. `builtin:` paths name samples shipped inside the package.
"""

from __future__ import annotations

import json
from pathlib import Path

from pmpo_ray.requests import Example
from pmpo_ray.tasks.formats import CONVERTERS, DataError

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
BUILTIN_PREFIX = "builtin:"

__all__ = ["DataError", "load_examples", "read_records", "resolve_data_path"]


def resolve_data_path(reference: str | Path) -> Path:
    text = str(reference)
    if text.startswith(BUILTIN_PREFIX):
        path = SAMPLES_DIR / text.removeprefix(BUILTIN_PREFIX)
        if not path.is_file():
            known = sorted(str(p.relative_to(SAMPLES_DIR)) for p in SAMPLES_DIR.rglob("*.json*"))
            raise DataError(f"{text}: no such built-in sample; known: {', '.join(known)}")
        return path
    return Path(text).expanduser()


def load_examples(path: str | Path, format: str = "supervised") -> list[Example]:
    path = resolve_data_path(path)
    convert = CONVERTERS[format]
    examples = []
    for row, record in read_records(path):
        where = f"{path}: row {row}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object, got {type(record).__name__}")
        examples.append(convert(record, row, where))
    ids = [e.example_id for e in examples]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: example ids are not unique")
    return examples


def read_records(path: Path) -> list[tuple[int, object]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DataError(f"{path}: cannot read ({reason})") from None
    records = _bbh_records(path, text) if path.suffix == ".json" else _jsonl_records(path, text)
    if not records:
        raise DataError(f"{path}: no examples")
    return records


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
