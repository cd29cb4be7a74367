"""Write a run folder's report: report.md, report.html and their PNGs under report_files/.

Every file is written to a temporary name and renamed into place, so a report being rewritten
is never seen half-written; PNGs left by an earlier report for tasks that are gone are removed.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pmpo_ray.reports.document import Figures, build_document
from pmpo_ray.reports.html import render_html
from pmpo_ray.reports.markdown import render_markdown
from pmpo_ray.reports.plots import loss_curve_png, round_times_png
from pmpo_ray.reports.run_data import RunData, load_run
from pmpo_ray.store import atomic_write_text, check_writable

FILES_DIR = "report_files"


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    images: tuple[Path, ...]


def write_report(run_dir: Path) -> ReportFiles:
    run = load_run(Path(run_dir))
    check_writable(run.run_dir / "report.md")
    figures, images = write_figures(run)
    blocks = build_document(run, figures)
    markdown, html = run.run_dir / "report.md", run.run_dir / "report.html"
    atomic_write_text(render_markdown(blocks), markdown)
    atomic_write_text(render_html(blocks, f"PMPO report: {run.run_dir.name}"), html)
    return ReportFiles(markdown, html, images)


def safe_name(task_id: str, taken: set[str]) -> str:
    """A file name for a task id that may hold any character; unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", task_id).strip("._") or "task"
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}-{suffix}"
    taken.add(name)
    return name


def write_figures(run: RunData) -> tuple[Figures, tuple[Path, ...]]:
    folder = run.run_dir / FILES_DIR
    folder.mkdir(exist_ok=True)
    curves, written, taken = {}, [], set()
    for task in run.tasks:
        name = f"loss-{safe_name(task.task_id, taken)}.png"
        atomic_png(folder / name, loss_curve_png, task.points, task.task_id)
        curves[task.task_id] = f"{FILES_DIR}/{name}"
        written.append(folder / name)
    rounds = None
    if run.rounds:
        atomic_png(folder / "rounds.png", round_times_png, run.rounds)
        rounds = f"{FILES_DIR}/rounds.png"
        written.append(folder / "rounds.png")
    for stale in set(folder.glob("*.png")) - set(written):
        stale.unlink()
    return Figures(curves, rounds), tuple(written)


def atomic_png(path: Path, draw, *args) -> None:
    """`draw(*args, file)` into a temporary file, renamed to `path` once complete."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        draw(*args, Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
