"""The older benchmarks of `pipelines/bench_scale.py`: a grid of suite runs over task counts and
replicas, and checkpoint sizes, on simulated engines.

    python -m pipelines.bench_scale --grid [--tasks 8,32,128] [--replicas 1,2,4,8,16]
        [--iterations 2]
    python -m pipelines.bench_scale --checkpoints [--checkpoint-tasks 128]

The real suite driver (`suite.run.run_suite`), real Ray Data jobs and real replica actors, with
the `simulated` backend (engines/simulated_engine.py: each call takes the modeled time and
answers deterministically, no model), on a multi-node Ray cluster simulated on this machine
(`ray.cluster_utils.Cluster` on loopback): a head of `--head-cpus` logical CPUs and nodes of
`--gpus-per-node` logical GPUs with `--cpus-per-gpu` logical CPUs each (12, as cloud GPU
machines have: Ray keeps that many idle worker processes per node, and with fewer its Ray Data
jobs would pay worker start-ups that a real cluster does not). Synthetic BBH-style tasks
(8 training examples each) are written to a temporary folder (`--out` keeps it).

R is the replicas of EACH pool: the scorer pool and a separate rewriter pool get R replicas of
one logical GPU each (2R GPUs in all), the case where overlapping generation with scoring
matters. The simulated costs (`--scored-token-us`, `--generated-token-us`, `--call-ms`) make a
round's generation and its scoring about equal engine work, so equal pools are the right split.
The pools start once per R and serve every task count, after a warm-up run (Ray Data starts
its worker processes then, not inside a measured round). `--batch-rows` (the pools'
replicas.batch_rows) and `--cohorts` (the suite's) compare driver settings on the same grid.

Per point (task count, R), from rounds.jsonl and the pools' work counters:
- rounds: rounds each task played on average (sum of `active_tasks` over rounds.jsonl lines
  / tasks; a line is a round of all tasks, or of one cohort with a pipelined scheduler).
- round s: rounds wall time / rounds, where rounds wall time is the sum of the lines'
  `wall_seconds` (in logs without it, generation_seconds + scoring_seconds).
- scorer/rewriter busy: the pool's engine seconds (busy_seconds of its replicas, over the
  run) / (R x rounds wall time). round busy: the median over lines of each line's
  `<pool>_busy_fraction` (scorer/rewriter; "-" in logs without them): a typical round,
  without the run's first and last rounds, where a pipeline fills and drains.
- overhead s: driver + Ray overhead per round = (rounds wall time - the bottleneck pool's
  engine seconds per replica) / rounds: the time the busiest pool's replicas were not inside
  an engine call. It counts what the driver and Ray add (planning, Arrow tables, Ray Data
  jobs, dispatch, checkpoints) and also uneven load between replicas and, where stages do not
  overlap, the other pool's stage. overhead % is its share of the round time.
- efficiency: throughput at R / (R x throughput at R=1) at the same task count; throughput =
  engine work / rounds wall time; engine work = tokens scored (every row's context and
  continuation) + tokens generated, the same at every R (checked: outputs depend on requests
  alone).
- ckpt KB: checkpoint bytes written per round line (`checkpoint_bytes` of rounds.jsonl; in
  logs without it, the state/round-*.json files' sizes).

The last line is `scaling efficiency at R=<largest R>, <largest task count> tasks: X.XX;
overhead per round: Y.Y s` (R=16 and 128 tasks with the default grid).

`--checkpoints` runs 128 tasks x 20 iterations at zero engine cost on R=1 and prints each
round's checkpoint bytes as written (incremental when the driver writes what changed) and as a
full-state checkpoint of every task would be (`checkpoint_bytes_full`; the file itself in
logs from before incremental checkpoints).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.scale_setup import engine_costs, suite_config, write_tasks
from pmpo_ray.run_folder.records import round_seconds


@dataclass(frozen=True)
class Point:
    tasks: int
    replicas: int
    rounds: float  # rounds a task played, on average
    wall_s: float  # rounds wall time
    busy_s: dict  # pool -> engine seconds over the run
    work_tokens: int
    checkpoint_bytes: float  # per round line
    round_busy: dict  # pool -> median over round lines of its busy fraction (new logs only)

    @property
    def round_s(self) -> float:
        return self.wall_s / self.rounds

    def busy_fraction(self, pool: str) -> float:
        return self.busy_s.get(pool, 0.0) / (self.replicas * self.wall_s)

    @property
    def overhead_s(self) -> float:
        bottleneck = max(self.busy_s.values()) / self.replicas
        return (self.wall_s - bottleneck) / self.rounds

    @property
    def throughput(self) -> float:
        return self.work_tokens / self.wall_s


def progress(message: str) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pool_busy(client) -> dict:
    return {name: pool.get("busy_seconds", 0.0) for name, pool in client.stats().items()}


def run_point(config, client, out: Path, log) -> tuple[list[dict], dict]:
    """One suite run on open pools: (its rounds.jsonl lines, engine seconds per pool)."""
    from pmpo_ray.suite.run import run_suite

    before = pool_busy(client)
    with contextlib.redirect_stdout(log):  # the suite's progress lines: one per round
        run_suite(config, out=out, engines=client)
    after = pool_busy(client)
    lines = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    return lines, {name: after[name] - before.get(name, 0.0) for name in after}


def checkpoint_sizes(lines: list[dict], out: Path) -> list[tuple[int, int | None]]:
    """Per round line: (bytes written, bytes a full-state checkpoint of every task takes); the
    full size is None when an incremental log does not give `checkpoint_bytes_full`."""
    if lines and all("checkpoint_bytes" in line for line in lines):
        written = [line["checkpoint_bytes"] for line in lines]
        return list(zip(written, full_state_sizes(lines, out)))
    # A log without checkpoint_bytes: each round wrote every task's whole state to its file.
    sizes = [path.stat().st_size for path in sorted((out / "state").glob("round-*.json"))]
    return [(size, size) for size in sizes]


def full_state_sizes(lines: list[dict], out: Path) -> list[int | None]:
    """What a full-state checkpoint of every task would have been, per round line: the log's
    `checkpoint_bytes_full`, else replayed from the incremental files where the driver can."""
    if all("checkpoint_bytes_full" in line for line in lines):
        return [line["checkpoint_bytes_full"] for line in lines]
    try:
        from pmpo_ray.suite.resume_point import full_checkpoint_sizes
    except ImportError:
        return [None] * len(lines)
    sizes = full_checkpoint_sizes(out)
    return sizes if len(sizes) == len(lines) else [None] * len(lines)


def measure(tasks: int, replicas: int, lines: list[dict], busy: dict, out: Path) -> Point:
    written = [size for size, _ in checkpoint_sizes(lines, out)]
    return Point(
        tasks=tasks,
        replicas=replicas,
        rounds=sum(line["active_tasks"] for line in lines) / tasks,
        wall_s=sum(round_seconds(line) for line in lines),
        busy_s=busy,
        work_tokens=sum(line["scoring_tokens"] + line["generation_tokens"] for line in lines),
        checkpoint_bytes=sum(written) / max(1, len(lines)),
        round_busy={
            pool: statistics.median(line[f"{pool}_busy_fraction"] for line in lines)
            for pool in busy
            if lines and all(f"{pool}_busy_fraction" in line for line in lines)
        },
    )


HEADER = (
    f"{'tasks':>5} {'R':>3} {'rounds':>6} {'round s':>8} {'scorer busy':>11} "
    f"{'rewriter busy':>13} {'round busy':>10} {'overhead s':>10} {'overhead %':>10} "
    f"{'efficiency':>10} "
    f"{'ckpt KB':>8}"
)


def row(point: Point, base: Point | None) -> str:
    efficiency = "-"
    if base is not None:
        if base.work_tokens != point.work_tokens:  # outputs must not depend on the pools
            progress(f"warning: {point.tasks} tasks: other work at R=1 than R={point.replicas}")
        efficiency = f"{point.throughput / (point.replicas * base.throughput):.2f}"
    share = 100 * point.overhead_s / point.round_s
    medians = [point.round_busy.get(pool) for pool in ("scorer", "rewriter")]
    round_busy = "/".join(f"{m:.2f}" for m in medians) if None not in medians else "-"
    return (
        f"{point.tasks:>5} {point.replicas:>3} {point.rounds:>6.1f} {point.round_s:>8.2f} "
        f"{point.busy_fraction('scorer'):>11.2f} {point.busy_fraction('rewriter'):>13.2f} "
        f"{round_busy:>10} {point.overhead_s:>10.2f} {share:>9.1f}% {efficiency:>10} "
        f"{point.checkpoint_bytes / 1024:>8.1f}"
    )


def run_grid(args, scratch: Path, report) -> None:
    engine = engine_costs(args)
    entries = write_tasks(scratch / "data", max(args.tasks))
    points: dict[tuple[int, int], Point] = {}
    report(HEADER)
    with open(scratch / "suite-progress.log", "w") as log:
        for replicas in args.replicas:
            try:
                run_pools(args, scratch, replicas, engine, entries, points, report, log)
            except Exception as error:  # e.g. the machine ran out of memory: say so, go on
                message = str(error).strip().splitlines()[0][:120]
                report(f"R={replicas}: stopped by {type(error).__name__}: {message}")
    report(final_line(points, args))


def run_pools(args, scratch, replicas, engine, entries, points, report, log) -> None:
    """Pools of R replicas each, warmed up, then one suite run per task count."""
    from pmpo_ray.config import RayConfig
    from pmpo_ray.engines.client import open_engines
    from pmpo_ray.ray_session import quiet_ray_data

    base = suite_config(entries[:1], replicas, engine, 1, args)
    started = time.perf_counter()
    with open_engines(base.scorer, base.rewriter, on_ray=True, ray=RayConfig()) as client:
        quiet_ray_data()
        took = time.perf_counter() - started
        progress(f"R={replicas}: pools of {replicas} started in {took:.1f} s; warming up")
        warm = suite_config(entries[: min(args.tasks)], replicas, engine, 1, args)
        run_point(warm, client, scratch / f"warm-R{replicas}", log)
        for tasks in args.tasks:
            progress(f"R={replicas}, {tasks} tasks, {args.iterations} iteration(s)")
            config = suite_config(entries[:tasks], replicas, engine, args.iterations, args)
            out = scratch / f"R{replicas}-T{tasks}"
            lines, busy = run_point(config, client, out, log)
            points[tasks, replicas] = measure(tasks, replicas, lines, busy, out)
            report(row(points[tasks, replicas], points.get((tasks, 1))))


def final_line(points: dict, args) -> str:
    """Efficiency and overhead at the largest point that ran (most tasks, then most R)."""
    if not points:
        return "scaling efficiency: no point finished"
    tasks, replicas = max(points)
    if (tasks, replicas) != (max(args.tasks), max(args.replicas)):
        progress(f"the largest grid point did not finish: the last line is R={replicas}, {tasks}")
    largest, base = points[tasks, replicas], points.get((tasks, 1))
    efficiency = largest.throughput / (replicas * base.throughput) if base else float("nan")
    return (
        f"scaling efficiency at R={replicas}, {tasks} tasks: {efficiency:.2f}; "
        f"overhead per round: {largest.overhead_s:.1f} s"
    )


def run_checkpoints(args, scratch: Path, report) -> None:
    """Checkpoint bytes per round of a long suite (engines cost nothing: driver-bound)."""
    from pmpo_ray.config import RayConfig
    from pmpo_ray.engines.client import open_engines
    from pmpo_ray.ray_session import quiet_ray_data

    free = {"seconds_per_call": 0, "seconds_per_scored_token": 0, "seconds_per_generated_token": 0}
    entries = write_tasks(scratch / "data", args.checkpoint_tasks)
    config = suite_config(entries, 1, free, args.checkpoint_iterations, args)
    out = scratch / "checkpoints"
    progress(f"{args.checkpoint_tasks} tasks x {args.checkpoint_iterations} iterations, R=1")
    with (
        open(scratch / "suite-progress.log", "w") as log,
        open_engines(config.scorer, config.rewriter, on_ray=True, ray=RayConfig()) as client,
    ):
        quiet_ray_data()
        lines, _ = run_point(config, client, out, log)
    sizes = checkpoint_sizes(lines, out)
    report(f"{'round':>5} {'active':>6} {'wall s':>7} {'full-state KB':>13} {'written KB':>10}")
    for line, (written, full) in zip(lines, sizes):
        full_kb = f"{full / 1024:.1f}" if full is not None else "-"
        report(
            f"{line['round']:>5} {line['active_tasks']:>6} {round_seconds(line):>7.2f} "
            f"{full_kb:>13} {written / 1024:>10.1f}"
        )
    report(
        f"checkpoint bytes per round, {args.checkpoint_tasks} tasks x "
        f"{args.checkpoint_iterations} iterations: before (full state) "
        f"{mean_kb([full for _, full in sizes])}; after (incremental) "
        f"{mean_kb([w for w, _ in sizes]) if 'checkpoint_bytes' in lines[0] else 'n/a'}"
    )


def mean_kb(sizes: list[int | None]) -> str:
    if not sizes or None in sizes:
        return "n/a (not in rounds.jsonl)"
    return f"{sum(sizes) / len(sizes) / 1024:.1f} KB"
