"""Where a suite job writes: its results folder `out`, or the staging folder of an --overwrite.

A new run needs a new folder; --overwrite runs in `out`'s staging folder and swaps its
results in once finished (run_folder/swap.py), so a failed --overwrite never costs the
previous results; --resume continues an unfinished run, in the staging folder when an
--overwrite run was cut short (its checkpoints live there, in staging/state/, the only place
that keeps them apart from the previous run's), else in `out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.swap import discard_staging, finish_interrupted_swap
from pmpo_ray.store import check_linked_folder


def resume_or_start(out: Path) -> bool:
    """`--resume auto`: True when `out` holds a run to continue (or a finished one), False when
    there is nothing there yet (missing, or an empty folder such as a fresh volume) to start
    in; a folder holding anything else is refused. What a retried or re-submitted job runs."""
    out = Path(out)
    if layout.state_dir(layout.overwrite_staging_dir(out)).is_dir():
        return True
    if is_empty_folder(out) or not out.exists():
        return False
    if layout.state_dir(out).is_dir() or layout.suite_summary_path(out).exists():
        return True
    raise ValueError(
        f"{out} holds files but no suite run (no state/ or suite.json); --resume auto starts "
        "only in a missing or empty folder: choose another --out"
    )


def is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def prepare_out_dir(
    out: Path,
    *,
    overwrite: bool,
    resume: bool,
    evaluate: bool = False,
    task_ids: Sequence[str] = (),
    accept_finished: bool = False,
) -> Path:
    """The folder this job writes its checkpoints and results into (`out` or its staging
    folder). Refuses to mix runs; a resumed suite that already finished is accepted only to
    `evaluate` it (an evaluation cut short continues), or with `accept_finished` (--resume
    auto: the caller reports it). A new run starts in a missing or empty folder."""
    out = Path(out)
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other")
    check_linked_folder(out)  # the link rule, before anything reads or writes `out`
    finish_interrupted_swap(out)
    check_task_folders(out, task_ids)
    if resume:
        return _resumed(out, evaluate or accept_finished)
    if overwrite:
        discard_staging(out)
        # Not created here: the checkpoints create it, so a run that fails before them
        # leaves no empty staging folder behind.
        return layout.overwrite_staging_dir(out)
    if out.exists() and not is_empty_folder(out):
        raise ValueError(
            f"{out} exists; choose another --out, pass --overwrite, or --resume an unfinished run"
        )
    return out


def _resumed(out: Path, evaluate: bool) -> Path:
    staging = layout.overwrite_staging_dir(out)
    if layout.state_dir(staging).is_dir():  # an --overwrite run cut short: the latest intent
        return staging
    if not layout.state_dir(out).is_dir():
        raise ValueError(f"{out}: nothing to resume (no state/ folder from an earlier run)")
    if layout.suite_summary_path(out).exists() and not evaluate:
        raise ValueError(
            f"{out}: this suite already finished (suite.json exists); add --evaluate to "
            "finish its evaluation, or run `pmpo evaluate`"
        )
    return out


def check_task_folders(out: Path, task_ids: Sequence[str]) -> None:
    """A task's folder must be free or a task run the job may replace: a user's folder of the
    same name under tasks/ would be lost, so it stops the job before it starts."""
    for task_id in task_ids:
        folder = layout.task_dir(out, task_id)
        if folder.exists() and not (folder / layout.RESULT).is_file():
            raise ValueError(
                f"{folder} exists and is not a task run (no {layout.RESULT}); move it away, "
                f"since task {task_id!r} writes its results there"
            )
