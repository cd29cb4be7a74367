"""The arithmetic of `pipelines/bench_scale.py`, without Ray: least-squares fits of measured
costs, the CPU-bound flag, the plumbing model that predicts efficiency at R replicas (stated in
bench_scale's docstring), and the last line's format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

CPU_BOUND_SHARE = 0.7  # a point whose CPU use passes this share of cores x wall is starved here
CPU_BOUND = "CPU-bound here"


def cpu_bound(cpu_s: float, wall_s: float, cores: int) -> bool:
    """Whether a point used more than 0.7 x cores x wall CPU seconds: its wall time then says
    how fast this machine's cores are, not what the plumbing costs on a cluster."""
    return cpu_s > CPU_BOUND_SHARE * cores * wall_s


def flag(cpu_s: float, wall_s: float, cores: int, machine_s: float | None = None) -> str:
    """ "CPU-bound here" when the point's own processes used > 0.7 x cores x wall; with
    " (others' load)" when only the whole machine's CPU use (`machine_s`: every process,
    this session's or not) did: the wall time is just as starved."""
    if cpu_bound(cpu_s, wall_s, cores):
        return CPU_BOUND
    if machine_s is not None and cpu_bound(machine_s, wall_s, cores):
        return f"{CPU_BOUND} (others' load)"
    return ""


@dataclass(frozen=True)
class Fit:
    """y = intercept + sum(slope_i x_i), least squares over `points` measurements."""

    names: tuple[str, ...]  # of the x columns
    intercept: float
    slopes: tuple[float, ...]
    r2: float
    points: int

    def slope(self, name: str) -> float:
        return self.slopes[self.names.index(name)]

    def predict(self, *xs: float) -> float:
        return self.intercept + sum(s * x for s, x in zip(self.slopes, xs))

    def describe(self, unit: str = "s") -> str:
        terms = " + ".join(f"{_short(s)} {unit}/{name}" for name, s in zip(self.names, self.slopes))
        fixed = f"{_short(self.intercept)} {unit}/job"
        return f"{fixed} + {terms} (R² {self.r2:.3f}, {self.points} jobs)"


def _short(value: float) -> str:
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def fit_linear(xs: Sequence[Sequence[float]], ys: Sequence[float], names: Sequence[str]) -> Fit:
    """Least squares of ys on an intercept and the columns of xs (one row per measurement).
    Raises ValueError when the columns cannot be told apart (collinear, or too few points)."""
    x = np.column_stack([np.ones(len(xs)), np.asarray(xs, dtype=float).reshape(len(xs), -1)])
    y = np.asarray(ys, dtype=float)
    if x.shape[1] != len(names) + 1:
        raise ValueError(f"{x.shape[1] - 1} x columns, {len(names)} names")
    if len(y) <= x.shape[1] or np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError(f"cannot fit {', '.join(names)} apart from {len(y)} points")
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = float(np.sum((y - x @ coefficients) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else 1.0
    slopes = tuple(map(float, coefficients[1:]))
    return Fit(tuple(names), float(coefficients[0]), slopes, r2, len(y))


@dataclass(frozen=True)
class PlumbingCosts:
    """What the model charges outside the engines, in seconds (bench_scale's docstring)."""

    job_s: float  # Z: a job's fixed cost, paid once per job whatever R is
    batch_s: float  # c_batch: cost per batch at R=1, spread over R replicas at R
    serial_batch_s: float  # the part of a batch's cost one process pays whatever R is
    row_s: float  # c_row: cost per request row of a job at R=1, spread over R
    serial_row_s: float  # the part of a row's cost one process pays whatever R is
    driver_row_s: float  # u: the driver's CPU per scored row outside client jobs


@dataclass(frozen=True)
class Job:
    rows: int  # request rows
    seconds_per_row: float  # engine seconds per row (what a work-sized batch plan reads)


@dataclass(frozen=True)
class Iteration:
    """One optimizer iteration of every task, as the engines and the plumbing see it."""

    jobs: tuple[Job, ...]  # scoring and generation jobs, in order
    scored_rows: int
    engine_s: float  # engine seconds, all replicas together

    @property
    def job_rows(self) -> int:
        return sum(job.rows for job in self.jobs)


# (rows of a job, replicas, engine seconds per row) -> how many batches the client cuts
BatchPlanner = Callable[[int, int, float], int]


def plumbing_s(
    costs: PlumbingCosts, it: Iteration, replicas: int, batches_of: BatchPlanner
) -> float:
    """jobs x Z + batches x max(c_batch / R, serial per batch) + job rows x max(c_row / R,
    serial per row) + scored rows x u: one iteration's time outside the engines, none of it
    overlapped with them."""
    batches = sum(batches_of(job.rows, replicas, job.seconds_per_row) for job in it.jobs)
    return (
        len(it.jobs) * costs.job_s
        + batches * max(costs.batch_s / replicas, costs.serial_batch_s)
        + it.job_rows * max(costs.row_s / replicas, costs.serial_row_s)
        + it.scored_rows * costs.driver_row_s
    )


def efficiency(
    costs: PlumbingCosts, it: Iteration, replicas: int, batches_of: BatchPlanner
) -> float:
    """Share of an iteration the replicas spend in their engines: (W/R) / (W/R + plumbing)."""
    engine = it.engine_s / replicas
    total = engine + plumbing_s(costs, it, replicas, batches_of)
    return engine / total if total > 0 else 1.0


@dataclass(frozen=True)
class Projection:
    hours: float
    plumbing_share: float
    engine_hours: float


def project(
    costs: PlumbingCosts, it: Iteration, iterations: int, replicas: int, batches_of: BatchPlanner
) -> Projection:
    engine = it.engine_s / replicas
    plumbing = plumbing_s(costs, it, replicas, batches_of)
    total = iterations * (engine + plumbing)
    share = plumbing / (engine + plumbing) if engine + plumbing > 0 else 0.0
    return Projection(total / 3600, share, iterations * engine / 3600)


def final_line(
    driver_us: dict[int, float], job_s: float, batches_96k: int | None, e16: float
) -> str:
    """`driver: X µs per scored row at 1,000 tasks (Y at 128); job fixed cost: Z s; batches
    per 96k-row job: B; predicted efficiency at R=16: E` (largest and smallest task counts)."""
    most, least = max(driver_us), min(driver_us)
    b = "n/a" if batches_96k is None else str(batches_96k)
    return (
        f"driver: {driver_us[most]:.0f} µs per scored row at {most:,} tasks "
        f"({driver_us[least]:.0f} at {least:,}); job fixed cost: {job_s:.2f} s; "
        f"batches per 96k-row job: {b}; predicted efficiency at R=16: {e16:.2f}"
    )
