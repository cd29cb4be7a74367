"""pipelines/bench_scale.py: its arithmetic without Ray (fits, the CPU-bound flag, the plumbing
model and projection, the last line), the session CPU meter, and one tiny real run."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.bench_costs import (
    CPU_BOUND,
    Iteration,
    Job,
    PlumbingCosts,
    efficiency,
    final_line,
    fit_linear,
    flag,
    plumbing_s,
    project,
)

LAST_LINE = re.compile(
    r"^driver: \d+ µs per scored row at [\d,]+ tasks \(\d+ at [\d,]+\); job fixed cost: "
    r"-?\d+\.\d\d s; batches per 96k-row job: \d+; predicted efficiency at R=16: \d\.\d\d$"
)


def test_least_squares_recovers_a_job_batch_row_cost():
    xs = [(b, b * rows) for b in (1, 2, 4, 8, 16) for rows in (1, 32)]
    ys = [0.05 + 0.004 * b + 2e-5 * r for b, r in xs]
    fit = fit_linear(xs, ys, ("batch", "row"))
    assert fit.intercept == pytest.approx(0.05)
    assert fit.slope("batch") == pytest.approx(0.004)
    assert fit.slope("row") == pytest.approx(2e-5)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(10, 100) == pytest.approx(0.05 + 0.04 + 0.002)


def test_a_fit_refuses_terms_it_cannot_tell_apart():
    with pytest.raises(ValueError, match="cannot fit"):
        fit_linear([(b, b) for b in (1, 2, 4, 8)], [1.0, 2.0, 3.0, 4.0], ("batch", "row"))


def test_fit_jobs_drops_the_row_term_with_one_batch_size():
    from pipelines.bench_jobs import JobPoint, fit_jobs, slope

    def point(batches, batch_rows=1, wall=None):
        session = 0.1 + 0.02 * batches
        return JobPoint(
            batch_rows,
            batches * batch_rows,
            batches,
            wall or session,
            0.01 * batches,
            session,
            0.0,
            {"dispatcher": 0.001 * batches},
        )

    fits = fit_jobs([point(b) for b in (1, 2, 4, 8)] + [point(4, wall=9.0)])  # a starved repeat
    assert fits.session.names == ("batch",) and slope(fits.session, "row") == 0.0
    assert fits.session.intercept == pytest.approx(0.1, abs=0.05)
    assert fits.wall.slope("batch") == pytest.approx(0.02)  # the fastest repeat per size
    assert fits.serial("batch") == pytest.approx(0.01)  # the driver's, above the dispatcher's


def test_the_cpu_bound_flag_is_seventy_percent_of_cores_times_wall():
    assert flag(1.39, 1.0, 2) == ""
    assert flag(1.41, 1.0, 2) == CPU_BOUND
    assert flag(0.5, 1.0, 2, machine_s=1.9) == f"{CPU_BOUND} (others' load)"
    assert flag(0.5, 1.0, 2, machine_s=1.0) == ""


COSTS = PlumbingCosts(
    job_s=0.5, batch_s=0.01, serial_batch_s=0.001, row_s=1e-5, serial_row_s=1e-6, driver_row_s=1e-4
)
ITERATION = Iteration(jobs=(Job(1000, 0.01), Job(9000, 0.01)), scored_rows=9000, engine_s=1000.0)


def ten_batches(rows, replicas, seconds_per_row):
    return 10


def test_plumbing_model_formula():
    # jobs x Z + batches x max(c_batch / R, s_batch) + rows x max(c_row / R, s_row) + scored x u
    at_1 = 2 * 0.5 + 20 * 0.01 + 10_000 * 1e-5 + 9000 * 1e-4
    assert plumbing_s(COSTS, ITERATION, 1, ten_batches) == pytest.approx(at_1)
    at_100 = 2 * 0.5 + 20 * 0.001 + 10_000 * 1e-6 + 9000 * 1e-4  # the serial floors
    assert plumbing_s(COSTS, ITERATION, 100, ten_batches) == pytest.approx(at_100)
    assert efficiency(COSTS, ITERATION, 100, ten_batches) == pytest.approx(10 / (10 + at_100))
    projection = project(COSTS, ITERATION, 20, 100, ten_batches)
    assert projection.hours == pytest.approx(20 * (10 + at_100) / 3600)
    assert projection.plumbing_share == pytest.approx(at_100 / (10 + at_100))
    assert projection.engine_hours == pytest.approx(200 / 3600)


def test_the_projected_iteration_counts_rows_from_the_optimizer_defaults():
    from pipelines.bench_projection import Workload

    it = Workload.defaults(tasks=1000, max_train=50, tokens_per_row=250, tps=12_500).iteration()
    assert [job.rows for job in it.jobs] == [1000, 1000 * 5 * 50, 3000, 1000 * 12 * 50]
    assert it.scored_rows == 850_000
    generated = 1000 * (256 + 12 * 256)
    assert it.engine_s == pytest.approx((850_000 * 250 + generated) / 12_500)


def test_the_batch_planner_covers_every_row():
    from pipelines.bench_projection import batch_plan, planned_batches

    sizes, planner = batch_plan(96_000, 1, seconds_per_row=0.02)
    assert sum(sizes) == 96_000 and all(size > 0 for size in sizes)
    assert planner and planned_batches(96_000, 1, 0.02) == len(sizes)


def test_the_last_line_format():
    line = final_line({128: 612.4, 1000: 701.6}, 0.0734, 1500, 0.518)
    assert line == (
        "driver: 702 µs per scored row at 1,000 tasks (612 at 128); job fixed cost: 0.07 s; "
        "batches per 96k-row job: 1500; predicted efficiency at R=16: 0.52"
    )
    assert LAST_LINE.match(line)


def test_session_cpu_counts_a_child_process_and_the_driver():
    from pipelines.bench_cpu import SessionCpu

    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    with SessionCpu(interval_s=0.05) as cpu:
        subprocess.run([sys.executable, "-c", f"{burn}\nimport time; time.sleep(0.2)"], check=True)
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
    reading = cpu.reading
    assert reading.driver_s >= 0.15
    assert reading.session_s - reading.driver_s >= 0.3  # the child's, read before it ended
    assert reading.machine_s >= reading.session_s * 0.9


@pytest.mark.ray
def test_a_tiny_real_run_prints_the_last_line():
    command = [
        sys.executable,
        "-m",
        "pipelines.bench_scale",
        "--tasks",
        "4",
        "--job-batches",
        "1,2,4",
        "--job-batch-rows",
        "1,4",
        "--job-repeats",
        "2",
        "--tokens-per-row",
        "80",
        "--gpus-per-node",
        "2",
        "--cpus-per-gpu",
        "2",
        "--head-cpus",
        "2",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert any(line.startswith("projection: 1,000 tasks x 20 iterations") for line in lines)
