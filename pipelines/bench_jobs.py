"""Part (b) of `pipelines/bench_scale.py`: what one engine-client job costs besides the
engines, fitted from scoring jobs of 1..128 batches at zero engine cost.

A pool of one simulated replica (no model, every call free) is opened per `batch_rows`
setting, all at once; `client.score(table)` is called directly on tables of built-in BBH rows
cut into 1..128 batches, the settings taken in turn; each job's wall time, the driver's CPU and
the whole Ray session's CPU (by process kind, pipelines/bench_cpu.py) are measured, and
batches are counted by the pool's own counters. Least squares then fits
`y = Z + c_batch x batches + c_row x rows` to each.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from pipelines.bench_costs import Fit, fit_linear, flag
from pipelines.bench_cpu import KINDS, SessionCpu, cores

ZERO_COST = {"seconds_per_call": 0, "seconds_per_scored_token": 0, "seconds_per_generated_token": 0}


@dataclass(frozen=True)
class JobPoint:
    batch_rows: int
    rows: int
    batches: int
    wall_s: float
    driver_s: float
    session_s: float
    machine_s: float
    by_kind: dict

    def row(self) -> str:
        cpu_flag = flag(self.session_s, self.wall_s, cores(), self.machine_s)
        busy = 100 * self.machine_s / (cores() * self.wall_s)
        return (
            f"{self.batch_rows:>10} {self.rows:>6} {self.batches:>7} {self.wall_s:>7.3f} "
            f"{self.driver_s:>9.3f} {self.session_s:>10.3f} "
            f"{self.by_kind.get('dispatcher', 0):>10.3f} {busy:>7.0f}%  {cpu_flag}"
        )


HEADER = (
    f"{'batch_rows':>10} {'rows':>6} {'batches':>7} {'wall s':>7} {'driver s':>9} "
    f"{'session s':>10} {'dispatch s':>10} {'machine':>8}  flag"
)


def batch_counter(client) -> int:
    """Batches the scorer pool has run: the client's `batches` counter where it keeps one,
    else the replicas' returned calls (one per batch)."""
    stats = client.stats()["scorer"]
    return stats["batches"] if "batches" in stats else stats["calls"]


def measure_jobs(
    batch_rows: list[int], batch_counts: list[int], repeats: int, report, progress
) -> list[JobPoint]:
    """Scoring jobs of r x b rows for each b and each batch_rows r, `repeats` times each, on one
    pool of one free simulated replica per r (Ray already connected), all open at once and
    taken in turn, so that drift (this machine's load, warming workers) is not read as a
    difference between batch sizes; after two warm-up jobs of the largest size per pool."""
    from pmpo_ray.ray_session import quiet_ray_data

    points = []
    with contextlib.ExitStack() as pools:
        clients = {rows: pools.enter_context(open_pool(rows)) for rows in batch_rows}
        quiet_ray_data()
        tables = {rows: bbh_table(rows * max(batch_counts)) for rows in batch_rows}
        for rows, client in clients.items():
            for _ in range(2):  # Ray Data starts its worker processes in the first jobs
                client.score(tables[rows])
        progress(f"batch_rows {batch_rows}: jobs of {batch_counts} batches x {repeats}")
        for _ in range(repeats):
            for count in batch_counts:
                for rows, client in clients.items():
                    point = measure_job(client, tables[rows].slice(0, rows * count), rows)
                    report(point.row())
                    points.append(point)
    return points


def open_pool(batch_rows: int):
    """A client over one pool of one free simulated replica with a fixed batch_rows."""
    from pmpo_ray.engines.client import open_engines
    from pmpo_ray.engines.registry import PoolConfig

    replicas = {"num_replicas": 1, "num_cpus": 1, "num_gpus": 1, "batch_rows": batch_rows}
    pool = {"engine": {"backend": "simulated", **ZERO_COST}, "replicas": replicas}
    return open_engines(PoolConfig.model_validate(pool), None, on_ray=True)


def bbh_table(rows: int):
    from pipelines.bench_projection import bbh_rows
    from pipelines.scale_setup import INITIAL_PROMPT
    from pmpo_ray.config import PromptFormat
    from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

    examples = load_examples(SAMPLES_DIR / "bbh" / "navigate.json")
    return bbh_rows(examples, "navigate", PromptFormat().role, INITIAL_PROMPT, rows)


def measure_job(client, requests, batch_rows: int) -> JobPoint:
    requests = requests.take(list(range(requests.num_rows)))  # a copy: a slice ships it all
    before = batch_counter(client)
    with SessionCpu() as cpu:
        client.score(requests)
    reading = cpu.reading
    return JobPoint(
        batch_rows=batch_rows,
        rows=requests.num_rows,
        batches=batch_counter(client) - before,
        wall_s=reading.wall_s,
        driver_s=reading.driver_s,
        session_s=reading.session_s,
        machine_s=reading.machine_s,
        by_kind=reading.by_kind,
    )


@dataclass(frozen=True)
class JobFits:
    wall: Fit  # over the fastest of each job size's repeats (the least disturbed)
    session: Fit
    driver: Fit
    dispatcher: Fit
    kinds: dict  # process kind (bench_cpu.KINDS) -> its CPU's fit

    def serial(self, term: str) -> float:
        """CPU per batch or row of the busiest single process (the driver or the pool's
        dispatcher): more replicas do not spread it."""
        return max(slope(self.driver, term), slope(self.dispatcher, term), 0.0)


def fit_jobs(points: list[JobPoint]) -> JobFits:
    """`y = Z + c_batch x batches + c_row x rows` for wall, session CPU, driver CPU and the
    dispatcher's CPU; with one batch_rows setting rows and batches cannot be told apart and the
    row term is dropped (c_row = 0)."""
    names = ("batch", "row")
    try:
        fit_linear([(p.batches, p.rows) for p in points], [p.wall_s for p in points], names)
    except ValueError:
        names = ("batch",)

    def fit(chosen: list[JobPoint], values: list[float]) -> Fit:
        xs = [(p.batches, p.rows)[: len(names)] for p in chosen]
        return fit_linear(xs, values, names)

    fastest: dict[tuple, JobPoint] = {}
    for point in points:
        key = (point.batch_rows, point.rows, point.batches)
        if key not in fastest or point.wall_s < fastest[key].wall_s:
            fastest[key] = point
    least_disturbed = list(fastest.values())
    if len(least_disturbed) <= len(names) + 1:  # too few sizes to fit on their own
        least_disturbed = points
    return JobFits(
        wall=fit(least_disturbed, [p.wall_s for p in least_disturbed]),
        session=fit(points, [p.session_s for p in points]),
        driver=fit(points, [p.driver_s for p in points]),
        dispatcher=fit(points, [p.by_kind.get("dispatcher", 0.0) for p in points]),
        kinds={kind: fit(points, [p.by_kind.get(kind, 0.0) for p in points]) for kind in KINDS},
    )


def slope(fit: Fit, term: str) -> float:
    """A fit's slope for `term` ("batch" or "row"), 0 where the fit has no such term."""
    return fit.slope(term) if term in fit.names else 0.0
