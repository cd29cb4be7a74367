"""The report's figures as PNG files: matplotlib on the Agg backend, so no display is needed."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pmpo_ray.run_folder.records import Point

ROLE_STYLE = {  # role -> (colour, label)
    "initial": ("#444444", "initial prompt"),
    "rewrite": ("#4c72b0", "rewritten candidate"),
    "parent": ("#dd8452", "incumbent (re-listed)"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # the report is written on servers and in CI: never open a window
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def png_figure(path: Path, size: tuple[float, float]) -> Iterator:
    """The axes of a new figure of `size` inches; once drawn, the figure is laid out and
    written to `path` as PNG. It is closed however the drawing ends: pyplot keeps every figure
    until then, and a report writes many."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=size, dpi=100)
    try:
        yield axes
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)


def best_so_far(points: Sequence[Point]) -> tuple[list[int], list[float]]:
    """The lowest finite loss seen up to each iteration, one value per iteration."""
    by_iteration: dict[int, float] = {}
    for point in points:
        if math.isfinite(point.loss):
            previous = by_iteration.get(point.iteration, math.inf)
            by_iteration[point.iteration] = min(previous, point.loss)
    iterations, best, running = [], [], math.inf
    for iteration in sorted(by_iteration):
        running = min(running, by_iteration[iteration])
        iterations.append(iteration)
        best.append(running)
    return iterations, best


def loss_curve_png(points: Sequence[Point], title: str, path: Path) -> None:
    """Every candidate's training loss per iteration as points, the best so far as a line."""
    with png_figure(path, (6.4, 3.6)) as axes:
        for role, (colour, label) in ROLE_STYLE.items():
            chosen = [p for p in points if p.role == role and math.isfinite(p.loss)]
            if chosen:
                axes.scatter(
                    [p.iteration for p in chosen],
                    [p.loss for p in chosen],
                    s=18,
                    alpha=0.6,
                    color=colour,
                    label=label,
                )
        iterations, best = best_so_far(points)
        axes.step(iterations, best, where="post", color="#c44e52", linewidth=2, label="best so far")
        unscored = sum(1 for p in points if not math.isfinite(p.loss))
        if unscored:
            axes.set_title(f"{title} ({unscored} candidate(s) without a finite loss)", fontsize=10)
        else:
            axes.set_title(title, fontsize=10)
        axes.set_xlabel("iteration")
        axes.set_ylabel("training loss")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)


def round_times_png(rounds: Sequence[dict], path: Path) -> None:
    """Seconds per round, split into the generation and the scoring stage; where cohorts
    overlapped the stages, the round's wall time is drawn as a line over them."""
    with png_figure(path, (6.4, 3.2)) as axes:
        index = [r["round"] for r in rounds]
        generation = [float(r.get("generation_seconds", 0.0)) for r in rounds]
        scoring = [float(r.get("scoring_seconds", 0.0)) for r in rounds]
        axes.bar(index, generation, color="#4c72b0", label="generation (rewriter)")
        axes.bar(index, scoring, bottom=generation, color="#55a868", label="scoring")
        if all("wall_seconds" in r for r in rounds):
            wall = [float(r["wall_seconds"]) for r in rounds]
            axes.plot(index, wall, color="#333333", marker="o", label="round wall time")
        axes.set_xlabel("round")
        axes.set_ylabel("seconds")
        axes.set_title("Wall time per round", fontsize=10)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(fontsize=8)
        axes.grid(axis="y", alpha=0.3)
