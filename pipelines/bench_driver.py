"""Part (a) of `pipelines/bench_scale.py`: the driver's CPU per scored row over whole suite
runs (the real driver, `suite.run.run_suite`) on one shared pool of one free simulated replica.

Per task count: the CPU seconds (getrusage, user + system, every thread of the driver process,
Ray Data's included) the suite run took, divided by the rows it scored (the sum of
`scoring_requests` over rounds.jsonl); beside it the wall time, the whole Ray session's CPU
(pipelines/bench_cpu.py) and the jobs and batches the client ran (its own counters).
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pipelines.bench_costs import flag
from pipelines.bench_cpu import SessionCpu, cores

ZERO_COST = {"seconds_per_call": 0, "seconds_per_scored_token": 0, "seconds_per_generated_token": 0}


@dataclass(frozen=True)
class SuitePoint:
    tasks: int
    iterations: int
    scored_rows: int
    generation_rows: int
    jobs: int | None
    batches: int
    wall_s: float
    driver_s: float
    session_s: float
    machine_s: float
    rounds: int  # rounds.jsonl lines

    @property
    def driver_us_per_row(self) -> float:
        return 1e6 * self.driver_s / self.scored_rows

    def row(self) -> str:
        jobs = "-" if self.jobs is None else str(self.jobs)
        busy = 100 * self.machine_s / (cores() * self.wall_s)
        return (
            f"{self.tasks:>5} {self.rounds:>6} {self.scored_rows:>8} {self.generation_rows:>6} "
            f"{jobs:>5} {self.batches:>7} {self.wall_s:>7.1f} {self.driver_s:>8.1f} "
            f"{self.driver_us_per_row:>7.0f} {self.session_s:>9.1f} {busy:>8.0f}%  "
            f"{flag(self.session_s, self.wall_s, cores(), self.machine_s)}"
        )


HEADER = (
    f"{'tasks':>5} {'rounds':>6} {'scored':>8} {'gen':>6} {'jobs':>5} {'batches':>7} "
    f"{'wall s':>7} {'driver s':>8} {'µs/row':>7} {'session s':>9} {'machine':>9}  flag"
)


def client_counts(client) -> tuple[int | None, int]:
    """(jobs, batches) the client has run, over all pools: its `jobs`/`batches` counters where
    stats() has them, else its `jobs` attribute and the replicas' returned calls."""
    stats = client.stats().values()
    if all("jobs" in pool for pool in stats):
        jobs = sum(pool["jobs"] for pool in stats)
    else:
        jobs = getattr(client, "jobs", None)
    batches = sum(pool["batches"] if "batches" in pool else pool["calls"] for pool in stats)
    return jobs, batches


def run_suite_point(config, client, out: Path, log) -> SuitePoint:
    """One suite run on the open client, measured."""
    from pmpo_ray.suite.run import run_suite

    jobs0, batches0 = client_counts(client)
    with SessionCpu() as cpu, contextlib.redirect_stdout(log):  # one progress line per round
        run_suite(config, out=out, engines=client)
    jobs1, batches1 = client_counts(client)
    lines = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    logged = [line.get("scoring_batches", 0) + line.get("generation_batches", 0) for line in lines]
    if any(logged) and sum(logged) != batches1 - batches0:
        print(
            f"warning: rounds.jsonl logs {sum(logged)} batches, the client counted "
            f"{batches1 - batches0}",
            file=sys.stderr,
        )
    reading = cpu.reading
    return SuitePoint(
        tasks=len(config.tasks),
        iterations=config.optimizer.iterations,
        scored_rows=sum(line["scoring_requests"] for line in lines),
        generation_rows=sum(line.get("generation_requests", 0) for line in lines),
        jobs=None if jobs0 is None else jobs1 - jobs0,
        batches=batches1 - batches0,
        wall_s=reading.wall_s,
        driver_s=reading.driver_s,
        session_s=reading.session_s,
        machine_s=reading.machine_s,
        rounds=len(lines),
    )


def measure_suites(args, scratch: Path, report, progress) -> list[SuitePoint]:
    """A warm-up run, then one suite run per task count, on one shared pool of one replica."""
    from pipelines.scale_setup import suite_config, write_tasks
    from pmpo_ray.engines.client import open_engines
    from pmpo_ray.ray_session import quiet_ray_data

    entries = write_tasks(scratch / "data", max(args.tasks), max_train=args.max_train)

    def config(count: int, iterations: int):
        return suite_config(
            entries[:count], 1, ZERO_COST, iterations, args, shared=not args.separate_rewriter
        )

    first = config(1, 1)
    points = []
    with (
        open(scratch / "suite-progress.log", "w") as log,
        open_engines(first.scorer, first.rewriter, on_ray=True) as client,
    ):
        quiet_ray_data()
        progress("warm-up suite run (4 tasks)")
        run_suite_point(config(min(4, max(args.tasks)), 1), client, scratch / "warm", log)
        report(HEADER)
        for count in args.tasks:
            progress(f"{count} tasks x {args.iterations} iteration(s)")
            point = run_suite_point(
                config(count, args.iterations), client, scratch / f"T{count}", log
            )
            report(point.row())
            points.append(point)
    return points
