"""The study report's figures: per variant, each task's change against the initial prompt as
a point and their mean as a bar (matplotlib on Agg, as the run report's figures)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from statistics import fmean

from pmpo_ray.reports.figure_folder import write_figure_files
from pmpo_ray.reports.plots import png_figure
from pmpo_ray.studies import tables


def change_png(changes: dict[str, list[float]], ylabel: str, title: str, path: Path) -> None:
    """Per variant, each task's change against the initial prompt as a point, their mean as a
    bar, so both the typical effect and how consistent it is across tasks show."""
    names = list(changes)
    with png_figure(path, (max(6.4, 0.9 * len(names) + 2), 3.8)) as axes:
        for x, name in enumerate(names):
            values = changes[name]
            if not values:
                continue
            axes.bar(x, fmean(values), color="#4c72b0", alpha=0.55, width=0.6)
            # Spread the points sideways deterministically so equal values stay visible.
            offsets = [0.2 * ((i % 5) - 2) / 2 for i in range(len(values))]
            xs = [x + o for o in offsets]
            axes.scatter(xs, values, s=16, color="#222222", zorder=3)
        axes.axhline(0.0, color="#c44e52", linewidth=1)
        axes.set_xticks(range(len(names)))
        axes.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axes.set_ylabel(ylabel)
        axes.set_title(title, fontsize=10)
        axes.grid(axis="y", alpha=0.3)


FIGURES = (  # file, metric, scale, y label, plot title, alt text
    (
        "ce-change.png",
        "heldout_ce",
        1.0,
        "Δ held-out CE vs initial",
        "Held-out CE change per task (dots) and mean (bar); lower is better",
        "held-out CE minus the initial prompt's, per variant: each task as a dot, the mean as "
        "a bar",
    ),
    (
        "option-gain.png",
        "option_accuracy",
        100.0,
        "Δ option accuracy (points)",
        "Option accuracy gain per MC task (dots) and mean (bar); higher is better",
        "option accuracy gain over the initial prompt in points, per variant: each "
        "multiple-choice task as a dot, the mean as a bar",
    ),
)


def write_figures(folder: Path, rows: Sequence[dict], variants: Sequence[str]) -> dict[str, str]:
    """alt text -> path relative to the report (the folder's name/file) of each PNG with something
    to show; those an earlier report wrote and this one does not are removed, nothing else
    (reports/figure_folder.py: `folder` must be a real folder, not a link)."""
    figures, files = {}, []
    for name, key, scale, ylabel, title, alt in FIGURES:
        changes = tables.changes(rows, variants, key, scale)
        if not any(changes.values()):
            continue
        files.append((name, partial(change_png, changes, ylabel, title)))
        figures[alt] = f"{folder.name}/{name}"
    write_figure_files(folder, files)
    return figures
