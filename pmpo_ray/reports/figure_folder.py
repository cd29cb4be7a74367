"""A report's folder of figures (a run's report_files/, a study's study_files/): written only
inside the run folder, and only the report's own files ever removed.

The folder must be a real folder: a link is refused in one line, since the report would write
(and tidy) wherever it points. A manifest in the folder lists the figures the last report
wrote; a new report removes those it no longer writes (a task that is gone) and nothing else,
so a file the report did not write stays, whatever its name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from pmpo_ray.store import atomic_write, atomic_write_json

MANIFEST = ".pmpo-figures.json"

FigureWriter = Callable[[Path], None]  # draws one figure into the path it is given


def check_figure_folder(folder: Path) -> None:
    """A link or a file where the figures go stops the report before it writes anything."""
    folder = Path(folder)
    if folder.is_symlink():
        raise ValueError(
            f"{folder}: is a link; a report writes its figures only inside the run folder, "
            "so remove the link (or replace it with a folder) and run the report again"
        )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; the report's figures go there")


def write_figure_files(folder: Path, figures: Sequence[tuple[str, FigureWriter]]) -> list[Path]:
    """Write each (file name, writer) into `folder` atomically; remove the figures an earlier
    report wrote that this one does not; returns the paths written, in order. The manifest
    lists every figure that may be there before any is written, so a report cut short
    leaves none that a later one would not know to remove."""
    folder = Path(folder)
    check_figure_folder(folder)
    folder.mkdir(exist_ok=True)
    names = [name for name, _ in figures]
    previous = written_figures(folder)
    _write_manifest(folder, sorted(previous | set(names)))
    paths = []
    for name, write in figures:
        path = folder / name
        atomic_write(path, write)
        paths.append(path)
    for stale in sorted(previous - set(names)):
        path = folder / stale
        if path.is_file() or path.is_symlink():
            path.unlink()
    _write_manifest(folder, sorted(names))
    return paths


def written_figures(folder: Path) -> set[str]:
    """The figure names the last report in `folder` wrote: plain file names only; a missing or
    unreadable manifest lists none, so nothing is removed on a guess."""
    try:
        names = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(names, list):
        return set()
    return {name for name in names if _is_figure_name(name)}


def _is_figure_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and name == Path(name).name
        and not name.startswith(".")
        and name.endswith(".png")
    )


def _write_manifest(folder: Path, names: list[str]) -> None:
    atomic_write_json(names, folder / MANIFEST)
