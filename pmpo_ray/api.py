"""The Python API: optimize one task, plan and optimize a suite, evaluate a run, write its
report, run an ablation study.

Every `pmpo` command and the `ray job submit` entrypoints are thin wrappers over these
functions. Engines are named the same way everywhere: `engines` is an open engine client
(`open_engines(...)`, left open for the caller); `scorer` and `rewriter` are pools to open
for the call (a `PoolConfig`, or an engine config such as `VllmConfig()`: one replica of
it). Options are keyword-only; configs are accepted as objects or as YAML paths; results
are frozen. Heavy libraries (Ray, vLLM, torch) load only inside the calls that need them, so
`import pmpo_ray` and config validation stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, Mapping

from pmpo_ray.config import EngineSettings, PromptFormat, as_config
from pmpo_ray.engines.client import EngineClient, open_engines
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.evaluation.evaluate_run import evaluate_run, with_overrides
from pmpo_ray.jobs import (
    EvaluationConfig,
    OptimizeJobConfig,
    SuiteConfig,
    with_iterations,
    writable_optimizer,
)
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.records import OptimizationResult
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.reports.build import write_report
from pmpo_ray.run_folder.read import read_run_folder, require_finished
from pmpo_ray.studies.config import StudyConfig
from pmpo_ray.studies.run import StudyResult, run_study
from pmpo_ray.suite.plan import SuitePlan, plan_suite
from pmpo_ray.suite.round_report import RoundReport
from pmpo_ray.suite.run import SuiteResult, run_suite
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.task import Task, load_task

RoundCallback = Callable[[int, list, dict], None]


def optimize(
    task: Task | TaskConfig | OptimizeJobConfig | str | Path,
    *,
    optimizer: OptimizerConfig | str | Path | None = None,
    engines: EngineClient | None = None,
    scorer: PoolConfig | EngineSettings | None = None,
    rewriter: PoolConfig | EngineSettings | None = None,
    prompt_format: PromptFormat | None = None,
    on_round: RoundCallback | None = None,
) -> OptimizationResult:
    """Run PMPO on one task and return its result. Nothing is written:
    `pmpo_ray.run_folder.write.write_task_run` writes a run folder (as `pmpo optimize` does).

    `task` is a loaded Task, a TaskConfig, or an OptimizeJobConfig (object or YAML path), whose
    optimizer, pools and prompt format are the defaults for the keywords left out.
    `engines` runs the job on an open client; else `scorer` and `rewriter` (default: the
    job's, else the built-in default model on vLLM) are opened in this process and closed at
    the end. `on_round(round_index, runs, stats)` sees every round.
    """
    job = None if isinstance(task, Task) else _job_config(task)
    if optimizer is not None:
        optimizer = as_config(OptimizerConfig, optimizer)
    optimizer = optimizer or (job.optimizer if job else OptimizerConfig())
    prompt_format = prompt_format or (job.prompt_format if job else PromptFormat())
    loaded = task if job is None else load_task(job.task)  # bad data fails before engines
    if engines is not None:
        _check_client(engines, scorer, rewriter)
        return _optimize_with(loaded, optimizer, engines, prompt_format, on_round)
    if scorer is None and job is not None:
        scorer, rewriter = job.scorer, rewriter or job.rewriter
    pools = (as_pool(scorer or PoolConfig(), "scorer"), as_pool(rewriter, "rewriter"))
    optimizer = writable_optimizer(optimizer, pools[1] or pools[0])
    with open_engines(*pools, prompt_format=prompt_format) as client:
        return _optimize_with(loaded, optimizer, client, prompt_format, on_round)


def optimize_suite(
    suite: SuiteConfig | str | Path,
    *,
    out: str | Path,
    resume: bool | Literal["auto"] = False,
    overwrite: bool = False,
    evaluate: bool = False,
    iterations: int | None = None,
    overrides: Mapping[str, object] | None = None,
    engines: EngineClient | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> SuiteResult:
    """Optimize every task of a suite together on shared engine pools in Ray (local unless
    the config or $RAY_ADDRESS names a cluster), writing checkpoints every round and a run
    folder per task under `out`; with `evaluate`, then evaluate every task on held-out data
    with the same warm engines. `iterations` overrides every task's iterations.

    `overwrite` replaces `out`'s results only once the new run has finished (a failed run
    leaves them as they were; `resume` continues it). `resume` continues an unfinished run of
    the same config and data (more iterations allowed), or with `evaluate` a finished suite's
    unfinished evaluation; `resume="auto"` starts in a missing or empty `out`, resumes an
    unfinished run of the same config, and reports a finished one (evaluating it with
    `evaluate`): what a job that Kubernetes retries runs. `on_round(report)` sees each round's
    `RoundReport` (its rounds.jsonl line, every task's standing, the pools' totals): wire any
    tracker there. `engines`: an open engine client to run on (left open), instead
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
        on_round=on_round,
    )


def plan(
    suite: SuiteConfig | str | Path,
    *,
    iterations: int | None = None,
    overrides: Mapping[str, object] | None = None,
    scoring_tokens_per_s: float | None = None,
    generation_tokens_per_s: float | None = None,
    rewrite_acceptance: float | None = None,
) -> SuitePlan:
    """What `optimize_suite` on this config will cost, before any engine starts: per task and
    in total, scored rows and tokens, forward passes, generation requests and tokens; each
    pool's replicas and their memory estimate; a wall time at the given throughputs (tokens/s
    per replica; defaults: the default model on CPU). `rewrite_acceptance`: the share of
    rewrites expected to pass vetting (default: measured for the built-in default model as the
    rewriter, 1.0 for any other). `render_plan(plan)` prints it."""
    config = as_config(SuiteConfig, suite, overrides)
    if iterations is not None:
        config = with_iterations(config, iterations)
    return plan_suite(
        config,
        scoring_tokens_per_s=scoring_tokens_per_s,
        generation_tokens_per_s=generation_tokens_per_s,
        rewrite_acceptance=rewrite_acceptance,
    )


def evaluate(
    run_dir: str | Path,
    *,
    max_examples: int | None = None,
    max_answer_tokens: int | None = None,
    accuracy: bool | None = None,
    engines: EngineClient | None = None,
    scorer: PoolConfig | EngineSettings | None = None,
) -> dict[str, dict]:
    """Score a run's initial, optimized and baseline prompts on every task's held-out split
    (and answer greedily for accuracy); writes evaluation.json and predictions.parquet per task
    as each is done and returns task id -> evaluation. A task already evaluated with the same
    settings is kept, so a second call finishes what a failed one left. `engines` runs it on an
    open client; else `scorer` (default: the run's own scorer engine) is opened in this
    process."""
    require_finished(Path(run_dir))
    folder = read_run_folder(Path(run_dir), evaluations=False)
    config: EvaluationConfig = with_overrides(
        folder.evaluation,
        max_examples=max_examples,
        max_answer_tokens=max_answer_tokens,
        accuracy=accuracy,
    )
    if engines is not None:
        _check_client(engines, scorer)
        return evaluate_run(folder, engines=engines, config=config)
    pool = as_pool(scorer or folder.engine, "scorer")
    with open_engines(pool, prompt_format=folder.prompt_format) as client:
        return evaluate_run(folder, engines=client, config=config, scorer=pool.engine)


def report(run_dir: str | Path):
    """Write report.md, report.html and report_files/*.png for a run; returns their paths."""
    return write_report(Path(run_dir))


def study(
    config: StudyConfig | str | Path,
    *,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    overrides: Mapping[str, object] | None = None,
) -> StudyResult:
    """Run an ablation study: every variant of the config over the same suite, seeds and
    forward-pass budget as one suite on shared pools, then every distinct final prompt
    evaluated once on held-out data; writes OUT/results.jsonl, OUT/study.md and study.html
    and OUT/runs/ (a suite folder: `resume` continues it)."""
    config = as_config(StudyConfig, config, overrides)
    return run_study(config, out=Path(out), resume=resume, overwrite=overwrite)


def as_pool(engine: PoolConfig | EngineSettings | None, role: str) -> PoolConfig | None:
    """A role's pool: a pool as given, an engine config as one replica of it."""
    if engine is None or isinstance(engine, PoolConfig):
        return engine
    if isinstance(engine, EngineSettings):
        return PoolConfig(engine=engine)
    raise TypeError(
        f"{role} must be a PoolConfig or an engine config such as VllmConfig() or HfConfig(); "
        f"got {type(engine).__name__} (an open client goes in `engines=`)"
    )


def _check_client(engines, *pools) -> None:
    if not isinstance(engines, EngineClient):
        raise TypeError(
            f"engines must be an open engine client (see open_engines); got "
            f"{type(engines).__name__} (a config goes in `scorer=` / `rewriter=`)"
        )
    if any(pool is not None for pool in pools):
        raise TypeError("give either engines (an open client) or pools to open, not both")


def _job_config(task) -> OptimizeJobConfig:
    if isinstance(task, TaskConfig):
        return OptimizeJobConfig(task=task)
    return as_config(OptimizeJobConfig, task)


def _optimize_with(task: Task, optimizer, client, prompt_format, on_round) -> OptimizationResult:
    run = TaskRun(task, optimizer, client.count_tokens, prompt_format)
    [result] = run_rounds([run], rewriter=client, scorer=client, on_round=on_round)
    return result
