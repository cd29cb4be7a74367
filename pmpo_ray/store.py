"""Write results so a crash never leaves a half-written file: temp file, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def check_writable(path: Path) -> None:
    """Fail before hours of work, not after: the folder must exist and accept files."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{path}: folder {folder} is not writable")


def atomic_write_parquet(table: pa.Table, path: Path | str) -> None:
    path = Path(path)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def atomic_write_text(text: str, path: Path | str) -> None:
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(data: object, path: Path | str) -> None:
    atomic_write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", path)


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` into a temporary file beside `path`, renamed onto it once complete."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
