"""Reading a run folder's JSON files through their records (files.py, records.Evaluation): a
missing or unreadable file, invalid JSON, or a missing or mistyped field is a one-line
ValueError that names the file and the field; a folder of another format says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from pmpo_ray.config import format_validation_error
from pmpo_ray.run_folder.files import FORMAT, FORMAT_KEY
from pmpo_ray.store import read_user_text

JSON_OBJECT = TypeAdapter(dict[str, Any])


def read_record(path: Path, record: type[BaseModel] | TypeAdapter):
    """The record a JSON file holds: `record` is its model class or its TypeAdapter."""
    return parse_record(read_user_text(path), record, str(path))


def parse_record(text: str, record: type[BaseModel] | TypeAdapter, where: str):
    """`text` (JSON) validated strictly as `record`; `where` names it in errors."""
    try:
        if isinstance(record, TypeAdapter):
            return record.validate_json(text, strict=True)
        return record.model_validate_json(text, strict=True)
    except ValidationError as error:
        versioned = FORMAT_KEY in getattr(record, "model_fields", {})
        raise file_error(error, where, versioned=versioned) from None


def file_error(error: ValidationError, where: str, *, versioned: bool = False) -> ValueError:
    """The first problem of `error` in one line; a versioned record's missing or unknown
    format marker is named first (the rest would only be its symptoms)."""
    problems = error.errors()
    marker = [p for p in problems if versioned and p["loc"][:1] == (FORMAT_KEY,)]
    if marker:
        return ValueError(other_version(where, marker[0]))
    first = problems[0]
    if first["type"] == "json_invalid":
        reason = first["msg"].removeprefix("Invalid JSON: ")
        return ValueError(f"{where}: not valid JSON ({reason})")
    if not first["loc"]:  # the whole file, e.g. a list where an object belongs
        return ValueError(f"{where}: {first['msg']}")
    line = format_validation_error(error, where).splitlines()[0]
    more = len(problems) - 1
    return ValueError(line + (f" (and {more} more)" if more else ""))


def other_version(where: str, problem: dict) -> str:
    given = "no" if problem["type"] == "missing" else repr(problem["input"])
    return (
        f"{where}: written by another pmpo-ray version ({given} {FORMAT_KEY}; this version "
        f"reads {FORMAT}): optimize again with this version, or read the folder with the "
        "version that wrote it"
    )


def read_json(path: Path) -> dict:
    """A file holding a JSON object, unchecked beyond that: for callers that only pass a
    file's content on (suite/run.py's suite.json; `read.read_suite_summary` checks it)."""
    return read_record(path, JSON_OBJECT)
