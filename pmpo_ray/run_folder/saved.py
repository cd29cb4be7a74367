"""What a job cut short (Ctrl-C) left on disk, in words for its one-line message: the last
finished round's checkpoint of a suite, the tasks an evaluation finished, and how to go on.

Read-only, except for one tidy-up: an --overwrite run stopped before its first round leaves
its staging folder without a file in it, and that folder is removed (the previous results
in `out` were never touched).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pmpo_ray.run_folder import layout


def suite_saved(out: Path, *, overwrite: bool = False) -> str:
    """What a suite job writing to `out` (with `overwrite`: in its staging folder) has saved,
    and how to continue it."""
    out = Path(out)
    staging = layout.overwrite_staging_dir(out)
    if layout.swap_manifest_path(out).is_file():
        return (
            f"the finished run was being swapped into {out}; the next command on {out} "
            "finishes the swap"
        )
    if overwrite or layout.state_dir(staging).is_dir():  # the run was staged
        again = "with --resume in place of --overwrite" if overwrite else "again"
        rounds = layout.state_files(staging)
        if rounds:
            return (
                f"the finished rounds are saved (the last in {rounds[-1]}); run the same "
                f"command {again} to continue from there"
            )
        if discard_empty_staging(out) or not staging.exists():
            return f"no round had finished; {out} keeps its previous results"
        return f"no round had finished; run the same command {again} to start it over"
    if layout.suite_summary_path(out).is_file():
        return (
            f"the optimization had finished ({layout.suite_summary_path(out)}); finish the "
            "evaluation by running the same command with --resume --evaluate"
        )
    rounds = layout.state_files(out)
    if rounds:
        return (
            f"the finished rounds are saved (the last in {rounds[-1]}); run the same command "
            "with --resume to continue from there"
        )
    if layout.state_dir(out).is_dir():
        return "no round had finished; run the same command with --resume to start it over"
    return "nothing was saved; run the same command again"


def evaluations_saved(run_dir: Path) -> str:
    """What `pmpo evaluate` on `run_dir` has saved (each task's files as it finishes)."""
    try:
        folders = layout.task_dirs(Path(run_dir))[1]
    except ValueError:
        return "nothing was saved"
    done = sum((folder / layout.EVALUATION).is_file() for folder in folders)
    return (
        f"{done} of {len(folders)} task(s) have an evaluation.json; run the same command again "
        "to continue (tasks evaluated with the same settings are kept)"
    )


def discard_empty_staging(out: Path) -> bool:
    """Remove `out`'s --overwrite staging folder when no file is in it (only empty folders:
    a run stopped before its first checkpoint); True when it was removed."""
    staging = layout.overwrite_staging_dir(Path(out))
    if staging.is_symlink() or not staging.is_dir():
        return False
    if any(not path.is_dir() or path.is_symlink() for path in staging.rglob("*")):
        return False
    shutil.rmtree(staging)
    return True
