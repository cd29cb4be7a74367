"""Checked reads of a run folder's JSON: a missing file, invalid JSON, or a missing or mistyped
field is a ValueError that names the file and the field."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path) -> dict:
    """A JSON file holding an object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError as error:  # a damaged file: binary garbage instead of JSON
        raise ValueError(f"{path}: not valid JSON (not UTF-8 at byte {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def checked(data: dict, name: str, where: Path | str, kind=(int, float)):
    """data[name], checked: a missing or mistyped field names the file and the field."""
    if name not in data:
        raise ValueError(f"{where}: field {name!r} missing")
    value = data[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{where}: field {name!r} has {value!r}, not {_kind_name(kind)}")
    return value


def optional_number(data: dict, name: str, where: Path | str) -> float | None:
    """A metric that only some task formats have: absent or null means "not measured"."""
    if data.get(name) is None:
        return None
    return checked(data, name, where)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
