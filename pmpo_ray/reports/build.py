"""Write a run folder's report: report.md, report.html and their PNGs under report_files/.

Every file is written to a temporary name and renamed into place, so a report being rewritten
is never seen half-written; PNGs an earlier report wrote for tasks that are gone are removed
(reports/figure_folder.py: nothing else, and never through a link).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pmpo_ray.reports.document import Figures, build_document
from pmpo_ray.reports.figure_folder import check_figure_folder, write_figure_files
from pmpo_ray.reports.html import render_html
from pmpo_ray.reports.markdown import render_markdown
from pmpo_ray.reports.plots import loss_curve_png, round_times_png
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.read import read_run_folder
from pmpo_ray.run_folder.records import RunFolder
from pmpo_ray.run_folder.swap import finish_interrupted_swap
from pmpo_ray.store import atomic_write_text, check_writable

FILES_DIR = layout.REPORT_FILES


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    images: tuple[Path, ...]


def write_report(run_dir: Path) -> ReportFiles:

    finish_interrupted_swap(Path(run_dir))  # never report a half-swapped --overwrite run
    run = read_run_folder(Path(run_dir))
    markdown, html = run.path / layout.REPORT_MARKDOWN, run.path / layout.REPORT_HTML
    check_writable(markdown)
    check_figure_folder(run.path / FILES_DIR)  # a link there: refused before anything is written
    figures, images = write_figures(run)
    blocks = build_document(run, figures)
    atomic_write_text(render_markdown(blocks), markdown)
    atomic_write_text(render_html(blocks, f"PMPO report: {run.path.name}"), html)
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


def write_figures(run: RunFolder) -> tuple[Figures, tuple[Path, ...]]:
    """The PNGs under report_files/ (figure_folder.py: a real folder of the run, where only
    the figures an earlier report wrote are removed)."""
    curves, figures, taken = {}, [], set()
    for task in run.tasks:
        name = f"loss-{safe_name(task.task_id, taken)}.png"
        figures.append((name, partial(loss_curve_png, task.points, task.task_id)))
        curves[task.task_id] = f"{FILES_DIR}/{name}"
    rounds = None
    if run.rounds:
        figures.append(("rounds.png", partial(round_times_png, run.rounds)))
        rounds = f"{FILES_DIR}/rounds.png"
    written = write_figure_files(run.path / FILES_DIR, figures)
    return Figures(curves, rounds), tuple(written)
