"""Read examples from a file, a shipped sample or the hub, with errors that name file and row.

File types: JSON Lines (one object per line), the BBH JSON layout `{"examples": [...]}`, CSV
and Parquet. `builtin:` references name samples shipped inside the package, `hf:` hub datasets.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from pmpo_ray.store import read_user_text
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.format_specs import TaskFormat
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.hub import hub_records, is_hub_reference
from pmpo_ray.tasks.layouts import convert_records
from pmpo_ray.tasks.tabular import csv_records, parquet_records

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
BUILTIN_PREFIX = "builtin:"
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".parquet")

__all__ = ["DataError", "LoadedData", "load_data", "load_examples", "read_records"]


class LoadedData(NamedTuple):
    examples: list[Example]
    layout: str  # the layout used, `auto` resolved
    skipped: dict[str, int]  # invalid rows left out (`skip_invalid`), by reason


def builtin_samples() -> list[str]:
    return sorted(
        str(p.relative_to(SAMPLES_DIR)) for p in SAMPLES_DIR.rglob("*") if p.suffix in DATA_SUFFIXES
    )


def resolve_data_path(reference: str | Path) -> Path:
    text = str(reference)
    if text.startswith(BUILTIN_PREFIX):
        path = SAMPLES_DIR / text.removeprefix(BUILTIN_PREFIX)
        if not path.is_file():
            raise DataError(
                f"{text}: no such built-in sample; known: {', '.join(builtin_samples())}"
            )
        return path
    return Path(text).expanduser()


def load_examples(
    reference: str | Path, format: TaskFormat = "supervised", **options
) -> list[Example]:
    """The examples alone; `options` are those of `load_data`."""
    return load_data(reference, format, **options).examples


def load_data(
    reference: str | Path,
    format: TaskFormat = "supervised",
    *,
    layout: str = "auto",
    columns: dict[str, str] | None = None,
    data_config: str | None = None,
    data_split: str = "train",
    allow_empty: bool = False,
    skip_invalid: bool = False,
) -> LoadedData:
    """Examples from a file, sample or hub dataset; an invalid row is an error naming it, or
    with `skip_invalid` is left out and counted by reason."""
    if is_hub_reference(reference):
        source = str(reference)
        records = hub_records(source, data_config, data_split)
    else:
        path = resolve_data_path(reference)
        source, records = str(path), read_records(path)
    if not records and not allow_empty:
        raise DataError(f"{source}: no examples")
    skipped = Counter() if skip_invalid else None
    examples, layout = convert_records(records, format, layout, columns or {}, source, skipped)
    if records and not examples and skipped:
        raise DataError(f"{source}: no valid examples; every row was skipped ({describe(skipped)})")
    ids = [e.example_id for e in examples]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source}: example ids are not unique")
    return LoadedData(examples, layout, dict(skipped or {}))


def describe(skipped: dict[str, int]) -> str:
    """{'target matches no option': 3} -> 'target matches no option: 3 rows'."""
    return "; ".join(
        f"{reason}: {count} row{'s' * (count != 1)}" for reason, count in skipped.items()
    )


def read_records(path: Path) -> list[tuple[int, object]]:
    """(row, record) pairs; JSON Lines rows are line numbers, other rows count records."""
    if path.is_dir():  # whatever its name ends with
        raise DataError(
            f"{path}: is a directory; name a data file ({', '.join(DATA_SUFFIXES)}), e.g. one "
            "inside it"
        )
    if not path.exists() and path.suffix in DATA_SUFFIXES:
        raise DataError(f"{path}: missing")
    if path.suffix == ".csv":
        return csv_records(path)
    if path.suffix == ".parquet":
        return parquet_records(path)
    if path.suffix not in DATA_SUFFIXES:
        raise DataError(f"{path}: unknown file type; expected one of {', '.join(DATA_SUFFIXES)}")
    try:
        text = read_user_text(path)
    except ValueError as error:  # a DataError, so a task's load names the task too
        raise DataError(str(error)) from None
    return _bbh_records(path, text) if path.suffix == ".json" else _jsonl_records(path, text)


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
