"""Drive task runs round by round through two stage lanes, generation and scoring, each running
one engine job at a time for a group of tasks, however many tasks there are.

A round of a task is a generation stage then a scoring stage. With one cohort every active task
plays each stage in the same job (one generation job, then one scoring job, per round). With
two cohorts a job takes one half of the tasks (fixed at the start), so while one half
generates the other half scores: a separate rewriter pool and the scorer pool both stay busy.
(A shared pool gains little: its replicas run both stages either way, and decoding half the
rewrite requests takes nearly as long as decoding all of them.) Each task sees
only its own requests and results, so how tasks are grouped never changes what a task does:
the same seed gives the same prompts with one cohort or many.

The scorer and rewriter are engine clients (`engines/client.py`: in process, or Ray Data jobs
over replica pools). A stage's job is one table: each task's requests with their ids offset
to be unique, answered in request order and sliced back per task by the same offsets.
Jobs run in two threads only when the clients say their calls may overlap (`concurrent_jobs`,
true for Ray Data pools); an in-process engine is called from this thread.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.engines.row_chunks import check_answered, total
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.requests import GENERATE_RESULT_SCHEMA

# on_round(round index, the runs that finished a round in it, stats of that round)
RoundCallback = Callable[[int, Sequence[TaskRun], dict], None]
GENERATE, SCORE = "generate", "score"


def combine_requests(tables: Sequence[pa.Table]) -> tuple[pa.Table, list[int]]:
    """One table with request ids made unique by offsetting each task's local ids."""
    offsets, parts, offset = [], [], 0
    for table in tables:
        offsets.append(offset)
        ids = pc.add(table.column("request_id"), pa.scalar(offset, pa.int64()))
        parts.append(
            table.set_column(table.schema.get_field_index("request_id"), "request_id", ids)
        )
        offset += table.num_rows
    if not parts:
        return pa.table({}), []
    return pa.concat_tables(parts, promote_options="default"), offsets


def split_results(
    result: pa.Table, offsets: Sequence[int], row_counts: Sequence[int]
) -> list[pa.Table]:
    """Each task's rows of a combined result in request order: consecutive zero-copy slices of
    `row_counts` rows, with the task's local request ids restored (`offsets`)."""
    index = result.schema.get_field_index("request_id")
    parts, start = [], 0
    for offset, rows in zip(offsets, row_counts):
        part = result.slice(start, rows)
        local = pc.subtract(part.column(index), pa.scalar(offset, pa.int64()))
        parts.append(part.set_column(index, "request_id", local))
        start += rows
    return parts


def run_stage(
    tables: Sequence[pa.Table], call: Callable[[pa.Table], pa.Table], empty: pa.Table
) -> list[pa.Table]:
    """Send every task's requests through one engine call (none when nobody asked). Results
    come back in request order (checked with whole arrays): one row per scoring request, `n`
    per generation request."""
    combined, offsets = combine_requests(tables)
    if combined.num_rows == 0:
        return [empty for _ in tables]
    result = call(combined)
    generation = "n" in combined.column_names
    check_answered(combined, result, samples=combined.column("n") if generation else None)
    counts = [total(t, "n") if generation else t.num_rows for t in tables]
    return split_results(result, offsets, counts)


def column_total(tables: Sequence[pa.Table], column: str) -> int:
    """Sum of a count column over result tables (tables without it count zero)."""
    return sum(pc.sum(t.column(column)).as_py() or 0 for t in tables if column in t.column_names)


def cohort_of(runs: Sequence[TaskRun], cohorts: int) -> dict[int, int]:
    """id(run) -> its cohort: the runs in order, cut into `cohorts` blocks of even size. A
    cohort stays together for the whole run (it shrinks as its tasks finish), so no job is
    ever split into smaller ones and each stage's batches stay as large as they can be."""
    return {id(run): index * cohorts // len(runs) for index, run in enumerate(runs)}


@dataclass
class Job:
    """One stage's engine call for a group of tasks, in flight."""

    stage: str
    runs: list[TaskRun]
    requests: list[pa.Table]
    future: Future
    started: float


@dataclass
class Lanes:
    """Tasks waiting for each stage, the job each stage has in flight, and the finished
    generation stats each task carries into its scoring stage."""

    waiting: dict[str, list[TaskRun]]
    cohorts: dict[int, int]  # id(run) -> cohort
    # the scorer's token counter: a cohort's rewrites are measured in one call (None: each
    # run counts its own)
    count_tokens: Callable[[Sequence[str]], list[int]] | None = None
    running: dict[str, Job] = field(default_factory=dict)
    generation_stats: dict[int, dict] = field(default_factory=dict)  # id(run) -> stats

    def busy(self) -> bool:
        return bool(self.running or self.waiting[GENERATE] or self.waiting[SCORE])

    def take_cohort(self, stage: str) -> list[TaskRun]:
        """The waiting runs of the cohort that has waited longest for `stage`."""
        waiting = self.waiting[stage]
        cohort = self.cohorts[id(waiting[0])]
        group = [run for run in waiting if self.cohorts[id(run)] == cohort]
        self.waiting[stage] = [run for run in waiting if self.cohorts[id(run)] != cohort]
        return group


def run_rounds(
    runs: Sequence[TaskRun],
    *,
    rewriter,
    scorer,
    on_round: RoundCallback | None = None,
    rounds_done: int = 0,
    cohorts: int = 1,
) -> list[OptimizationResult]:
    """Rounds until every run is done. `on_round(index, advanced, stats)` sees each round:
    the runs that finished one in it, each stage's wall time, request counts and tokens
    (generated; read by the scorer), and `wall_seconds` since the previous round ended."""
    overlap = getattr(scorer, "concurrent_jobs", False) and getattr(
        rewriter, "concurrent_jobs", False
    )
    cohorts = cohorts if overlap else 1  # in turn, smaller jobs would only cost batch size
    clients = {GENERATE: rewriter, SCORE: scorer}
    active = [run for run in runs if not run.done]
    counter = getattr(scorer, "count_tokens", None)
    lanes = Lanes({GENERATE: active, SCORE: []}, cohort_of(active, cohorts), counter)
    round_index, last_round_end = rounds_done, time.perf_counter()
    with ThreadPoolExecutor(max_workers=2 if overlap else 1) as threads:
        submit = threads.submit if overlap else run_now
        while lanes.busy():
            for stage in (GENERATE, SCORE):
                if stage not in lanes.running and lanes.waiting[stage]:
                    lanes.running[stage] = start_job(stage, lanes, clients[stage], submit)
            wait([job.future for job in lanes.running.values()], return_when=FIRST_COMPLETED)
            for stage in (GENERATE, SCORE):
                job = lanes.running.get(stage)
                if job is None or not job.future.done():
                    continue
                del lanes.running[stage]
                stats = finish_job(job, lanes)
                if stats is not None:
                    round_index += 1
                    now = time.perf_counter()
                    stats = {"round": round_index, **stats, "wall_seconds": now - last_round_end}
                    last_round_end = now
                    if on_round is not None:
                        on_round(round_index, job.runs, stats)
    return [run.result() for run in runs]


def start_job(stage: str, lanes: Lanes, client, submit) -> Job:
    """The cohort that has waited longest for `stage`, planned and sent as one job."""
    group = lanes.take_cohort(stage)
    if stage == GENERATE:
        requests = [run.plan_generation() for run in group]
        empty, call = GENERATE_RESULT_SCHEMA.empty_table(), client.generate
    else:
        requests = [run.plan_scoring() for run in group]
        empty, call = pa.table({"request_id": pa.array([], pa.int64())}), client.score
    future = submit(timed_stage, requests, call, empty, client)
    return Job(stage, group, requests, future, time.perf_counter())


def timed_stage(requests, call, empty, client) -> tuple[list[pa.Table], float, int | None]:
    """`run_stage`, when it ended (the driver may read the result later, busy with the other
    lane's job), and the batches the client cut it into (None: it does not say)."""
    results = run_stage(requests, call, empty)
    batches = getattr(client, "last_job_batches", None)
    return results, time.perf_counter(), batches() if batches is not None else None


def finish_job(job: Job, lanes: Lanes) -> dict | None:
    """Hand a finished job's results to its tasks and move them on; the stats of the round
    the group completed when it was a scoring job, else None."""
    results, ended, batches = job.future.result()  # an engine error ends the run here
    seconds = ended - job.started
    if job.stage == GENERATE:
        lengths = cohort_prompt_lengths(job.runs, results, lanes.count_tokens)
        for run, requests, samples in zip(job.runs, job.requests, results):
            run.take_generations(samples, lengths)
            lanes.generation_stats[id(run)] = {
                "generation_requests": requests.num_rows,
                "generation_tokens": column_total([samples], "n_tokens"),
                "generation_seconds": seconds,
                "generation_batches": batches,
            }
        lanes.waiting[SCORE].extend(job.runs)
        return None
    for run, rows in zip(job.runs, results):
        run.take_scores(rows)
    lanes.waiting[GENERATE].extend(run for run in job.runs if not run.done)
    generation = [lanes.generation_stats.pop(id(run)) for run in job.runs]
    return {
        "active_tasks": len(job.runs),
        "generation_requests": sum(g["generation_requests"] for g in generation),
        "generation_tokens": sum(g["generation_tokens"] for g in generation),
        "generation_seconds": generation[0]["generation_seconds"],  # the cohort's one job
        "generation_batches": generation[0]["generation_batches"],
        "scoring_requests": sum(t.num_rows for t in job.requests),
        "scoring_tokens": column_total(results, "n_input_tokens"),  # a naive scorer's
        "scoring_tokens_computed": column_total(results, "n_computed_tokens"),
        "scoring_seconds": seconds,
        "scoring_batches": batches,
    }


def cohort_prompt_lengths(
    runs: Sequence[TaskRun], results: Sequence[pa.Table], count_tokens
) -> dict[str, int] | None:
    """Token counts of every prompt the cohort's rewrites hold, in one counting call for all
    its tasks (a call per task was a round trip per task per round); None without a counter."""
    if count_tokens is None:
        return None
    wanted = set()
    for run, samples in zip(runs, results):
        wanted.update(run.prompts_to_measure(samples))
    texts = sorted(wanted)
    return dict(zip(texts, count_tokens(texts))) if texts else {}


def run_now(function, *args) -> Future:
    """A finished future of `function(*args)`, run in this thread: the executor's `submit`
    for clients whose calls must not overlap."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except BaseException as error:  # raised where the result is read, as from a thread
        future.set_exception(error)
    return future
