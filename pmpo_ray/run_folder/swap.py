"""Swap a finished --overwrite run's results into its suite folder, never losing both runs.

A suite run with --overwrite writes a whole suite folder of its own in `out`'s staging folder
(layout.overwrite_staging_dir), so until it has finished, `out` keeps the previous results
untouched; a run that fails or is killed leaves them as they were (and --resume continues
the staged run). Once the staged suite.json exists, the swap starts: a manifest of what moves
in is written first (the commit point), then the previous results are removed and the new
ones renamed into place one path at a time, suite.json last. Every step can be repeated, so a
swap cut short (a killed job) is finished by the next command that looks at `out`
(`finish_interrupted_swap`). Only the project's own outputs (layout.result_paths) are ever
removed: a user's files in `out` and in tasks/ stay.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pmpo_ray.run_folder import layout
from pmpo_ray.store import atomic_write_json


def swap_in(out: Path) -> list[Path]:
    """Replace `out`'s results with the finished run in its staging folder; returns the paths
    moved in (relative to `out`)."""
    out = Path(out)
    staging = layout.overwrite_staging_dir(out)
    if not layout.suite_summary_path(staging).is_file():
        raise ValueError(f"{staging}: the staged run has not finished (no suite.json); not swapped")
    incoming = _manifest(out)
    _remove(layout.suite_summary_path(out))  # first: `out` must not look finished mid-swap
    for path in _old_results(out, incoming):
        _remove(path)
    (out / layout.TASKS_DIR).mkdir(parents=True, exist_ok=True)
    # suite.json last: its arrival marks `out` finished with the new run whole.
    for relative in sorted(incoming, key=lambda rel: rel == Path(layout.SUITE_SUMMARY)):
        source = staging / relative
        if source.exists():  # absent: an interrupted swap had moved it already
            _remove(out / relative)
            source.rename(out / relative)
    shutil.rmtree(staging)
    return incoming


def finish_interrupted_swap(out: Path) -> bool:
    """Finish a swap a killed job left half done, or one whose run finished just before it was
    killed; True when there was one. Call before anything reads or writes `out`."""
    out = Path(out)
    staging = layout.overwrite_staging_dir(out)
    started = layout.swap_manifest_path(out).is_file()
    if not (started or layout.suite_summary_path(staging).is_file()):
        return False
    if started and not layout.suite_summary_path(staging).exists():
        if layout.suite_summary_path(out).exists():  # killed after the last move: tidy up
            shutil.rmtree(staging)
            return True
    swap_in(out)
    print(f"{out}: finished swapping in the results of an earlier --overwrite run", flush=True)
    return True


def discard_staging(out: Path) -> None:
    """Remove an unfinished staged run (of an earlier --overwrite that failed); a new one
    replaces it. It is the project's own folder, holding nothing of the user's."""
    staging = layout.overwrite_staging_dir(out)
    if staging.is_symlink():
        staging.unlink()
    elif staging.exists():
        shutil.rmtree(staging)


def _manifest(out: Path) -> list[Path]:
    """What moves in: written once when the swap starts, read back when it is resumed (by
    then some paths have moved and the staging folder no longer lists them)."""
    path = layout.swap_manifest_path(out)
    if path.is_file():
        return [Path(p) for p in json.loads(path.read_text(encoding="utf-8"))]
    staging = layout.overwrite_staging_dir(out)
    # Hidden paths are a crash's temporaries and staging leftovers: they stay and go with it.
    incoming = [
        p.relative_to(staging) for p in layout.result_paths(staging) if not p.name.startswith(".")
    ]
    atomic_write_json([str(p) for p in incoming], path)
    return incoming


def _old_results(out: Path, incoming: list[Path]) -> list[Path]:
    """`out`'s results the new run does not replace: a dropped task's folder, an old report,
    temporaries; never the staging folder itself, never a user's file."""
    staging = layout.overwrite_staging_dir(out)
    replaced = {out / relative for relative in incoming}
    return [p for p in layout.result_paths(out) if p != staging and p not in replaced]


def _remove(path: Path) -> None:
    """Remove a file, a folder, or a link (never what it points to); nothing there is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
