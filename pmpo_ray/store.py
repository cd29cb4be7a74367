"""Read a user's file with the file named in every error; write results so a crash never
leaves a half-written file (temp file, then rename), check before the work that they can be
written, and keep them somewhere when they still cannot."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_user_text(path: Path | str, what: str | None = None) -> str:
    """The UTF-8 text of a file the user named; a missing, unreadable or non-UTF-8 file is a
    one-line ValueError that names it (as `what`, e.g. "config x.yaml", else its path)."""
    name = what or str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{name}: missing") from None
    except OSError as error:
        raise ValueError(f"{name}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError as error:  # a binary or damaged file
        raise ValueError(f"{name}: not UTF-8 text (byte {error.start})") from None


def check_writable(path: Path | str) -> None:
    """Fail before hours of work, not after: `path` is a file to write, so it must not be a
    folder, and its folder must exist and accept files."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; name a file to write")
    probe_folder(path.parent if str(path.parent) else Path("."), what=str(path))


def check_linked_folder(path: Path | str, what: str = "--out") -> None:
    """The rule for a link where a results folder goes: a link to an existing folder is
    followed (the results go into that folder, and the link stays a link); a link to nothing
    or to a file is refused here, before any work, in one line."""
    path = Path(path)
    if not path.is_symlink() or path.is_dir():
        return
    target = os.readlink(path)
    state = "is not a folder" if path.exists() else "does not exist"
    raise ValueError(
        f"{what} {path}: a link to {target}, which {state}; a link as {what} must point to an "
        "existing folder (create it, or remove the link)"
    )


def check_writable_folder(folder: Path | str) -> None:
    """`folder` is a results folder: an existing one must accept files; a new one is created
    later, so the folder it goes into must exist and accept files. A link must point to an
    existing folder (`check_linked_folder`)."""
    folder = Path(folder)
    check_linked_folder(folder)
    if folder.exists():
        if not folder.is_dir():
            raise ValueError(f"{folder}: exists and is not a folder")
        probe_folder(folder, what=str(folder))
    else:
        probe_folder(folder.parent if str(folder.parent) else Path("."), what=str(folder))


def probe_folder(folder: Path, what: str) -> None:
    """Create and remove a file in `folder`: permissions, read-only mounts and full disks all
    show up here (os.access misses the last two, and says yes to root everywhere)."""
    if not folder.is_dir():
        raise ValueError(f"{what}: folder {folder} does not exist")
    try:
        probe = _create_beside(folder / ".pmpo-write-probe")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"{what}: folder {folder} is not writable ({reason})") from None
    probe.unlink(missing_ok=True)


def atomic_write_parquet(table, path: Path | str) -> None:
    import pyarrow.parquet as pq  # pyarrow loads only when a table is written

    path = Path(path)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def atomic_write_text(text: str, path: Path | str) -> None:
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(data: object, path: Path | str) -> None:
    atomic_write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", path)


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` into a temporary file beside `path`, renamed onto it once complete."""
    tmp = _create_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_or_keep(target: Path, write: Callable[[Path], None], what: str) -> None:
    """`write(target)`; when that fails, `write` into a fresh folder in the system temp dir
    instead, so hours of results survive a full disk or a vanished folder, and raise a
    ValueError that says where they are."""
    try:
        write(target)
    except (OSError, ValueError) as error:
        kept = Path(tempfile.mkdtemp(prefix="pmpo-unsaved-")) / target.name
        try:
            write(kept)
        except (OSError, ValueError):
            raise error from None
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(
            f"{target}: cannot write the {what} ({reason}); it was saved to {kept} instead"
        ) from None


def _create_beside(path: Path) -> Path:
    """A new, empty hidden file beside `path`. Created with mode 0666 so the umask applies,
    as it does for open(); tempfile.mkstemp would make it 0600, and rename keeps that mode."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{path}: no free temporary name beside it")


def new_folder_beside(path: Path, prefix: str) -> Path:
    """A new, empty folder with a unique name beside `path`, made by mkdir so the umask
    applies (tempfile.mkdtemp makes 0700, and a run folder renamed from it would keep that)."""
    for _ in range(100):
        candidate = path.with_name(f"{prefix}{secrets.token_hex(4)}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{path}: no free folder name beside it")
