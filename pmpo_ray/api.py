"""The Python API: optimize one task, optimize a suite, evaluate a run, write its report.

Every `pmpo` command and the `ray job submit` entrypoint are thin wrappers over these four
functions. Options are keyword-only; configs are accepted as objects or as YAML paths; results
are frozen. Heavy libraries (Ray, vLLM, torch) load only inside the calls that need them, so
`import pmpo_ray` and config validation stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from pmpo_ray.config import PromptFormat, as_config
from pmpo_ray.evaluation.config import EvaluationConfig
from pmpo_ray.pmpo.config import OptimizeJobConfig, OptimizerConfig
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.suite.config import SuiteConfig
from pmpo_ray.suite.run import SuiteResult, run_suite
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.task import Task

RoundCallback = Callable[[int, list, dict], None]


def optimize(
    task: Task | TaskConfig | OptimizeJobConfig | str | Path,
    *,
    optimizer: OptimizerConfig | str | Path | None = None,
    engines=None,
    prompt_format: PromptFormat | None = None,
    on_round: RoundCallback | None = None,
) -> OptimizationResult:
    """Run PMPO on one task and return its result. Nothing is written:
    `pmpo_ray.run_folder.write.write_task_run` writes a run folder (as `pmpo optimize` does).

    `task` is a loaded Task, a TaskConfig, or an OptimizeJobConfig (object or YAML path), whose
    optimizer, engines and prompt format are the defaults for the keywords left out.
    `engines` is an open engine client (e.g. from `open_engines(..., on_ray=True)`, left
    open for the caller), or an engine config (or None: the job's, else the built-in default
    model on vLLM) that is opened in this process and closed at the end.
    `on_round(round_index, runs, stats)` sees every round.
    """
    from pmpo_ray.engines.client import EngineClient

    job = None if isinstance(task, Task) else _job_config(task)
    if optimizer is not None:
        optimizer = as_config(OptimizerConfig, optimizer)
    optimizer = optimizer or (job.optimizer if job else OptimizerConfig())
    prompt_format = prompt_format or (job.prompt_format if job else PromptFormat())
    loaded = task if job is None else _load_task(job.task)
    if isinstance(engines, EngineClient):
        return _optimize_with(loaded, optimizer, engines, prompt_format, on_round)
    from pmpo_ray.engines.client import open_engines

    scorer, rewriter = _engine_pools(engines, job)
    with open_engines(scorer, rewriter, prompt_format=prompt_format) as client:
        return _optimize_with(loaded, optimizer, client, prompt_format, on_round)


def optimize_suite(
    suite: SuiteConfig | str | Path,
    *,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    evaluate: bool = False,
    iterations: int | None = None,
    overrides: Mapping[str, object] | None = None,
    engines=None,
) -> SuiteResult:
    """Optimize every task of a suite together on shared engine pools in Ray (local unless
    the config or $RAY_ADDRESS names a cluster), writing checkpoints every round and a run
    folder per task under `out`; with `evaluate`, then evaluate every task on held-out data
    with the same warm engines. `iterations` overrides every task's iterations.

    `overwrite` replaces `out`'s results only once the new run has finished (a failed run
    leaves them as they were; `resume` continues it). `resume` continues an unfinished run of
    the same config and data (more iterations allowed), or with `evaluate` a finished suite's
    unfinished evaluation. `engines`: an open engine client to run on (left open), instead
    of replica pools started on Ray."""
    config = as_config(SuiteConfig, suite, overrides)
    return run_suite(
        config,
        out=Path(out),
        resume=resume,
        overwrite=overwrite,
        evaluate=evaluate,
        iterations=iterations,
        engines=engines,
    )


def evaluate(
    run_dir: str | Path,
    *,
    max_examples: int | None = None,
    max_answer_tokens: int | None = None,
    accuracy: bool | None = None,
    engines=None,
) -> dict[str, dict]:
    """Score a run's initial, optimized and baseline prompts on every task's held-out split
    (and answer greedily for accuracy); writes evaluation.json and predictions.parquet per task
    as each is done and returns task id -> evaluation. A task already evaluated with the same
    settings is kept, so a second call finishes what a failed one left. `engines` as in
    `optimize`; None loads the run's scorer in this process."""
    from pmpo_ray.engines.client import EngineClient, open_engines
    from pmpo_ray.engines.registry import PoolConfig
    from pmpo_ray.evaluation.evaluate_run import evaluate_run, with_overrides
    from pmpo_ray.run_folder.read import read_run_folder, require_finished

    require_finished(Path(run_dir))
    folder = read_run_folder(Path(run_dir), evaluations=False)
    config: EvaluationConfig = with_overrides(
        folder.evaluation,
        max_examples=max_examples,
        max_answer_tokens=max_answer_tokens,
        accuracy=accuracy,
    )
    if isinstance(engines, EngineClient):
        return evaluate_run(folder, engines=engines, config=config)
    scorer = PoolConfig(engine=engines if engines is not None else folder.engine)
    with open_engines(scorer, prompt_format=folder.prompt_format) as client:
        return evaluate_run(folder, engines=client, config=config)


def report(run_dir: str | Path):
    """Write report.md, report.html and report_files/*.png for a run; returns their paths."""
    from pmpo_ray.reports.build import write_report

    return write_report(Path(run_dir))


def _job_config(task) -> OptimizeJobConfig:
    if isinstance(task, TaskConfig):
        return OptimizeJobConfig(task=task)
    return as_config(OptimizeJobConfig, task)


def _engine_pools(engines, job: OptimizeJobConfig | None):
    """Scorer and rewriter configs to open in process: `engines` if given, else the job's."""
    from pmpo_ray.config import EngineSettings
    from pmpo_ray.engines.registry import PoolConfig, default_engine_config

    if engines is None:
        scorer = job.scorer if job else default_engine_config()
        rewriter = job.rewriter if job else None
        return PoolConfig(engine=scorer), PoolConfig(engine=rewriter) if rewriter else None
    if not isinstance(engines, EngineSettings):
        raise TypeError(
            f"engines must be an engine client (see open_engines) or an engine config such as "
            f"VllmConfig() or HfConfig(); got {type(engines).__name__}"
        )
    return PoolConfig(engine=engines), None


def _load_task(config: TaskConfig) -> Task:
    from pmpo_ray.tasks.task import load_task

    return load_task(config)


def _optimize_with(task: Task, optimizer, client, prompt_format, on_round) -> OptimizationResult:
    from pmpo_ray.pmpo.rounds import run_rounds
    from pmpo_ray.pmpo.task_run import TaskRun

    run = TaskRun(task, optimizer, client.count_tokens, prompt_format)
    [result] = run_rounds([run], generator=client, scorer=client, on_round=on_round)
    return result
