"""Optimize a suite: every task together on shared engine pools in Ray, round by round.

Data and config fail before any engine starts; the replica pools start once; each round sends
all active tasks' generation requests through one Ray Data job and all scoring requests through
another (pmpo/rounds.py); checkpoints are written after every round (suite/checkpoints.py);
the run folder is written at the end (run_folder/), and evaluation reuses the warm engines and
the in-memory results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.suite.config import SuiteConfig


@dataclass(frozen=True)
class SuiteResult:
    out: Path
    results: tuple[OptimizationResult, ...]  # in the suite's task order
    summary: dict  # task id -> losses, iterations, stop reason, best prompt, budget
    evaluation: dict | None  # task id -> evaluation.json content, when evaluated


def run_suite(
    config: SuiteConfig,
    *,
    out: Path,
    resume: bool = False,
    overwrite: bool = False,
    evaluate: bool = False,
    iterations: int | None = None,
) -> SuiteResult:
    from pmpo_ray.engines.client import open_engines
    from pmpo_ray.pmpo.rounds import run_rounds
    from pmpo_ray.pmpo.task_run import TaskRun
    from pmpo_ray.ray_session import quiet_ray_data
    from pmpo_ray.run_folder.layout import task_dir
    from pmpo_ray.run_folder.task_config import task_job_config
    from pmpo_ray.run_folder.write import write_suite_summary, write_suite_tasks
    from pmpo_ray.suite.checkpoints import SuiteCheckpoints
    from pmpo_ray.tasks.task import load_task

    if iterations is not None:
        config = with_iterations(config, iterations)
    tasks = [load_task(entry.task) for entry in config.tasks]  # bad data fails first
    for entry in config.tasks:  # a name that cannot be a folder fails now, not at the end
        task_dir(out, entry.task.name)
    prepare_out_dir(out, overwrite=overwrite, resume=resume)
    jobs = [task_job_config(config, entry) for entry in config.tasks]
    with open_engines(
        config.scorer,
        config.rewriter,
        prompt_format=config.prompt_format,
        on_ray=True,
        ray=config.ray,
    ) as client:
        quiet_ray_data()
        runs = [
            TaskRun(task, job.optimizer, client.count_tokens, config.prompt_format)
            for task, job in zip(tasks, jobs)
        ]
        checkpoints = SuiteCheckpoints(runs, out, client)
        rounds_done = checkpoints.resume() if resume else 0
        results = run_rounds(
            runs,
            generator=client,
            scorer=client,
            on_round=checkpoints.on_round,
            rounds_done=rounds_done,
        )
        write_suite_tasks(out, results, jobs)
        summary = write_suite_summary(out, config.model_dump(mode="json"), results)
        evaluation = _evaluate(out, results, jobs, client) if evaluate else None
    return SuiteResult(out, tuple(results), summary, evaluation)


def _evaluate(out: Path, results, jobs, client) -> dict:
    from pmpo_ray.evaluation.evaluate_run import evaluate_run
    from pmpo_ray.run_folder.from_results import run_folder_from_results

    folder = run_folder_from_results(out, results, jobs)
    return evaluate_run(folder, scorer=client, generator=client)


def with_iterations(config: SuiteConfig, iterations: int) -> SuiteConfig:
    """Every task's iteration count set to `iterations`, including tasks with their own
    optimizer settings."""
    tasks = [
        entry.model_copy(
            update={"optimizer": entry.optimizer.model_copy(update={"iterations": iterations})}
        )
        if entry.optimizer is not None
        else entry
        for entry in config.tasks
    ]
    optimizer = config.optimizer.model_copy(update={"iterations": iterations})
    return config.model_copy(update={"optimizer": optimizer, "tasks": tasks})


def prepare_out_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to mix runs: a new run needs a new folder (or --overwrite), a resumed one an
    unfinished run's folder. --overwrite removes only what a suite job writes."""
    from pmpo_ray.run_folder.layout import state_dir, suite_summary_path
    from pmpo_ray.run_folder.write import remove_results

    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other")
    if resume:
        if not state_dir(out).is_dir():
            raise ValueError(f"{out}: nothing to resume (no state/ folder from an earlier run)")
        if suite_summary_path(out).exists():
            raise ValueError(f"{out}: this suite already finished (suite.json exists)")
        return
    if out.exists() and not overwrite:
        raise ValueError(
            f"{out} exists; choose another --out, pass --overwrite, or --resume an unfinished run"
        )
    remove_results(out)
