"""Optimize a suite: every task together on shared engine pools in Ray, round by round.

Data, config and a resumed run's checkpoint fail before any engine starts; the replica pools
start once; tasks play their rounds in cohorts (pmpo/rounds.py), each stage of a cohort one
Ray Data job, one cohort scoring while another generates when the rewriter has a pool of its
own; what each round changed is checkpointed (suite/checkpoints.py); the run folder is written
at the end (run_folder/), an --overwrite run's in a staging folder swapped in once finished
(suite/out_dir.py); evaluation reuses the warm engines and the in-memory results, task by
task, and resumes too.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.scoring import check_rows_fit
from pmpo_ray.errors import PoolDownError
from pmpo_ray.evaluation.evaluate_run import evaluate_run
from pmpo_ray.jobs import SuiteConfig, task_job_config, with_iterations
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.ray_session import quiet_ray_data
from pmpo_ray.requests import score_requests
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.from_results import run_folder_from_results
from pmpo_ray.run_folder.read import read_run_folder, read_suite_summary
from pmpo_ray.run_folder.swap import swap_in
from pmpo_ray.run_folder.write import write_suite_summary, write_suite_tasks
from pmpo_ray.suite.checkpoints import SuiteCheckpoints, read_resume_point
from pmpo_ray.suite.fingerprint import run_fingerprint
from pmpo_ray.suite.mlflow_tracking import require_mlflow, suite_tracking
from pmpo_ray.suite.out_dir import prepare_out_dir, resume_or_start
from pmpo_ray.suite.ray_metrics import ray_metrics
from pmpo_ray.suite.round_report import RoundCallback
from pmpo_ray.tasks.task import load_task


@dataclass(frozen=True)
class SuiteResult:
    out: Path
    # In the suite's task order; empty when the optimization had finished before this call
    # (--resume --evaluate of a finished suite: only its evaluation ran).
    results: tuple[OptimizationResult, ...]
    summary: dict  # task id -> losses, iterations, stop reason, best prompt, work
    evaluation: dict | None  # task id -> evaluation.json content, when evaluated


def run_suite(
    config: SuiteConfig,
    *,
    out: Path,
    resume: bool | Literal["auto"] = False,
    overwrite: bool = False,
    evaluate: bool = False,
    iterations: int | None = None,
    engines=None,
    on_round: RoundCallback | None = None,
) -> SuiteResult:
    """`engines`: an open engine client to use (left open), else pools start on Ray.
    `resume="auto"`: start in a missing or empty `out`, resume an unfinished run of the same
    config, report a finished one (evaluating it when asked); a retried job runs this.
    `on_round(report)` sees every round's RoundReport (suite/round_report.py)."""

    if iterations is not None:
        config = with_iterations(config, iterations)
    tasks = [load_task(entry.task) for entry in config.tasks]  # bad data fails first
    for entry in config.tasks:  # a name that cannot be a folder fails now, not at the end
        layout.task_dir(out, entry.task.name)
    jobs = [task_job_config(config, entry) for entry in config.tasks]
    task_ids = [task.task_id for task in tasks]
    if engines is None:  # before anything is written or any replica starts
        check_rows_fit_scorer(tasks, config)
    require_mlflow(config.tracking)  # a missing extra fails before anything is written
    auto = resume == "auto"
    if auto:
        resume = resume_or_start(out)
    work = prepare_out_dir(
        out,
        overwrite=overwrite,
        resume=resume,
        evaluate=evaluate,
        task_ids=task_ids,
        accept_finished=auto,
    )
    fingerprints = {task.task_id: run_fingerprint(task, job) for task, job in zip(tasks, jobs)}
    point = read_resume_point(work, fingerprints) if resume else None
    if auto and not evaluate and layout.suite_summary_path(work).exists():
        print(f"{out}: this suite already finished; nothing to run")
        return SuiteResult(out, (), read_suite_summary(work), None)
    # Tracking (MLflow) is outermost: its runs end FAILED on any error, and the results are
    # logged from `out` once the engines are closed. A resumed run opens new MLflow runs.
    with (
        suite_tracking(config, jobs, out) as tracker,
        _resume_hint(out, work),
        suite_engines(config, engines) as client,
        ray_metrics(config.name) as metrics,  # None off Ray; Ray is connected by now
    ):
        if layout.suite_summary_path(work).exists():  # resumed to finish its evaluation
            summary = read_suite_summary(work)
            evaluation = _evaluate(read_run_folder(out, evaluations=False), config, client)
            return SuiteResult(out, (), summary, evaluation)
        runs = [
            TaskRun(task, job.optimizer, client.count_tokens, config.prompt_format)
            for task, job in zip(tasks, jobs)
        ]
        # Leaving the block waits until every finished round is on disk, also on a crash.
        callbacks = [on_round] if on_round is not None else []
        callbacks += tracker.callbacks() + ([metrics] if metrics is not None else [])
        with SuiteCheckpoints(runs, work, client, fingerprints, callbacks) as checkpoints:
            results = run_rounds(
                runs,
                rewriter=client,
                scorer=client,
                on_round=checkpoints.on_round,
                rounds_done=checkpoints.restore(point) if point else 0,
                cohorts=config.stage_cohorts(),
            )
        write_suite_tasks(work, results, jobs)
        summary = write_suite_summary(work, config.model_dump(mode="json"), results)
        if work != out:
            swap_in(out)
        if not evaluate:
            return SuiteResult(out, tuple(results), summary, None)
        folder = run_folder_from_results(out, results, jobs)
        return SuiteResult(out, tuple(results), summary, _evaluate(folder, config, client))


@contextmanager
def _resume_hint(out: Path, work: Path):
    """A pool that lost every replica ends the job; the rounds before it are checkpointed."""

    try:
        yield
    except PoolDownError as error:
        if layout.suite_summary_path(out).exists():  # the optimization had finished
            how = "finish the evaluation with --resume --evaluate (not --overwrite)"
        else:
            again = "with --resume in place of --overwrite" if work != out else "with --resume"
            how = f"the finished rounds are saved in {layout.state_dir(work)}: run the same "
            how += f"command again {again}"
        raise PoolDownError(f"{error}; {how}") from None


@contextmanager
def suite_engines(config: SuiteConfig, engines=None):
    """`engines` when given (left open), else the suite's replica pools on Ray."""
    if engines is not None:
        yield engines
        return

    with open_engines(
        config.scorer,
        config.rewriter,
        prompt_format=config.prompt_format,
        on_ray=True,
        ray=config.ray,
    ) as client:
        quiet_ray_data()
        yield client


def check_rows_fit_scorer(tasks, config: SuiteConfig) -> None:
    """Every task's examples under its initial prompt fit the scorer's window (its tokenizer
    alone): a too-long row is named in one line before the replicas start. Rewrites can still
    lengthen the prompt later; those rows are checked by the engines."""

    if not config.scorer.engine.loads_model:  # no window to check
        return
    tables = [
        score_requests(
            [("initial", task.initial_prompt)],
            task.train + task.test,
            task_id=task.task_id,
            kind="candidate",
            role=config.prompt_format.role,
            with_rejected=True,
        )
        for task in tasks
    ]
    check_rows_fit(tables, config.scorer.engine, config.prompt_format)


def _evaluate(folder, config: SuiteConfig, client) -> dict:

    return evaluate_run(folder, engines=client, config=config.evaluation)
