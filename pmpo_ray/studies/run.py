"""Run a study: every variant's runs of every task as one suite on shared engine pools (all in
the same rounds), then every distinct final prompt evaluated once on held-out data with the
same warm engines, then one result row per (task, variant, seed) and the report.

The study folder holds runs/ (an ordinary suite folder: checkpoints, resumable, one task
folder per run), results.jsonl, and study.md / study.html with their plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pmpo_ray.evaluation.cache import EvaluationCache
from pmpo_ray.reports.figure_folder import check_figure_folder
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.read import read_run_folder
from pmpo_ray.run_folder.saved import suite_saved
from pmpo_ray.store import atomic_write_text, check_linked_folder
from pmpo_ray.studies.config import StudyConfig
from pmpo_ray.studies.heldout import cache_holds, evaluate_prompts
from pmpo_ray.studies.report import FILES_DIR, write_study_report
from pmpo_ray.studies.variants import INITIAL, VARIANTS, StudyRun, expand
from pmpo_ray.suite.run import check_rows_fit_scorer, run_suite, suite_engines
from pmpo_ray.tasks.task import load_task

RUNS_DIR = "runs"
RESULTS = "results.jsonl"


@dataclass(frozen=True)
class StudyResult:
    out: Path
    rows: tuple[dict, ...]  # results.jsonl, in plan order, the initial prompts first per task
    report: tuple[Path, Path]  # study.md, study.html


def run_study(
    config: StudyConfig, *, out: Path, resume: bool = False, overwrite: bool = False
) -> StudyResult:

    started = time.perf_counter()
    out = Path(out)
    check_study_out(out, resume=resume, overwrite=overwrite)  # before engines start
    suite, plan = expand(config.suite, config.variants, config.seeds, config.forward_pass_budget)
    tasks = {entry.task.name: load_task(entry.task) for entry in config.suite.tasks}
    check_rows_fit_scorer(list(tasks.values()), suite)  # before any engine starts
    runs_dir = out / RUNS_DIR
    finished = resume and layout.suite_summary_path(runs_dir).exists()
    found = final_prompts(plan, tasks, runs_dir) if finished else None
    if found and cache_holds(found[1], **evaluation_settings(suite)):
        # A finished study whose prompts were all evaluated: no engine needs to start.
        metrics, eval_seconds = evaluate_finals(found[1], None, suite)
    else:
        with suite_engines(suite) as client:
            if not finished:
                run_suite(suite, out=runs_dir, resume=resume, overwrite=overwrite, engines=client)
                found = final_prompts(plan, tasks, runs_dir)
            metrics, eval_seconds = evaluate_finals(found[1], client, suite)
    folders = found[0]
    rows = result_rows(plan, tasks, folders, metrics)
    atomic_write_text("".join(json.dumps(row) + "\n" for row in rows), out / RESULTS)
    settings = study_settings(config, tasks, time.perf_counter() - started, eval_seconds)
    report = write_report(out, rows, config, settings)
    return StudyResult(out, tuple(rows), report)


def check_study_out(out: Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Where the study writes, checked before any engine starts: a link must point to an
    existing folder (store.check_linked_folder: it is followed); an existing folder must be
    empty or a study (its runs/ or results.jsonl); a study is replaced only with
    `overwrite`; `resume` needs a study to continue; a link as study_files/ is refused."""
    out = Path(out)
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other")
    check_linked_folder(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    check_figure_folder(out / FILES_DIR)
    runs = out / RUNS_DIR
    is_study = runs.exists() or (out / RESULTS).exists()
    if out.is_dir() and not is_study and any(out.iterdir()):
        raise ValueError(
            f"{out} exists and is not a study (no {RUNS_DIR}/ or {RESULTS}); choose another "
            "--out (a new or empty folder)"
        )
    if resume and not (layout.suite_summary_path(runs).exists() or layout.suite_unfinished(runs)):
        raise ValueError(
            f"{out}: nothing to resume (no study runs in {runs}); run it without --resume"
        )
    if is_study and not (resume or overwrite):
        raise ValueError(
            f"{out} holds a study already; choose another --out, pass --overwrite, or --resume"
        )


def study_saved(out: Path, *, overwrite: bool = False) -> str:
    """What a study cut short (Ctrl-C) has saved in `out`, and how to continue it."""
    runs = Path(out) / RUNS_DIR
    if layout.suite_summary_path(runs).is_file() and not layout.suite_unfinished(runs):
        return (
            f"the study's runs had finished ({runs}); run the same command with --resume to "
            "evaluate their prompts and write the report"
        )
    return suite_saved(runs, overwrite=overwrite)


def finals(plan: list[StudyRun], folders: dict, task: str) -> list[str]:
    """The best prompt of every run of `task`."""
    return [folders[run.run_name].best_prompt for run in plan if run.task == task]


def final_prompts(plan: list[StudyRun], tasks: dict, runs_dir: Path) -> tuple[dict, dict]:
    """The runs' folders by task id, and task id -> (task, its initial and final prompts)."""
    folders = {f.task_id: f for f in read_run_folder(runs_dir, evaluations=False).tasks}
    prompts = {
        name: (task, [task.initial_prompt, *finals(plan, folders, name)])
        for name, task in tasks.items()
    }
    return folders, prompts


def evaluate_finals(prompts: dict, client, suite) -> tuple[dict, float]:
    """The metrics of every distinct prompt, and the evaluation's seconds; `client` None when
    the cache holds every prompt."""
    distinct = sum(len(set(texts)) for _, texts in prompts.values())
    print(f"held-out evaluation: {distinct} distinct prompts of {len(prompts)} tasks")
    return evaluate_prompts(prompts, client=client, **evaluation_settings(suite))


def evaluation_settings(suite) -> dict:
    """What the study's held-out evaluation depends on besides its prompts."""
    return {
        "config": suite.evaluation,
        "role": suite.prompt_format.role,
        "scorer": suite.scorer.engine.model_dump(mode="json"),
        "cache": EvaluationCache.from_environment(),
    }


def result_rows(plan: list[StudyRun], tasks: dict, folders: dict, metrics: dict) -> list[dict]:
    """The initial prompt's row per task, then one row per (task, variant, seed) of the plan."""
    rows = []
    for name, task in tasks.items():
        rows.append(
            {
                "task": name,
                "variant": INITIAL,
                "seed": None,
                "format": task.format,
                "prompt": task.initial_prompt,
                "train_loss": None,
                **metrics[name][task.initial_prompt],
                "forward_passes": 0,
                "iterations": 0,
                "stop_reason": "",
                "format_loss_share": None,
                "same_as": None,
            }
        )
        for run in (r for r in plan if r.task == name):
            folder = folders[run.run_name]
            rows.append(
                {
                    "task": name,
                    "variant": run.variant,
                    "seed": run.seed,
                    "format": task.format,
                    "prompt": folder.best_prompt,
                    "train_loss": folder.best_loss,
                    **metrics[name][folder.best_prompt],
                    "forward_passes": folder.training_work.forward_passes,
                    "iterations": folder.iterations,
                    "stop_reason": folder.stop_reason,
                    "format_loss_share": folder.format_loss_share,
                    "same_as": run.same_as,
                }
            )
    return rows


def study_settings(config: StudyConfig, tasks: dict, seconds: float, eval_seconds: float) -> dict:
    suite = config.suite
    first = next(iter(tasks.values()))
    held_out = suite.evaluation.max_examples or len(first.test)
    return {
        "tasks": len(tasks),
        "variants": len(config.variants),
        "seeds": ", ".join(str(s) for s in config.seeds),
        "forward-pass budget per run": config.forward_pass_budget,
        "iterations cap": suite.optimizer.iterations,
        "k hard cases x n rewrites": f"{suite.optimizer.hard_cases} x "
        f"{suite.optimizer.rewrites_per_case}",
        "scorer": scorer_name(suite.scorer.engine),
        "training / held-out examples (first task)": f"{len(first.train)} / "
        f"{min(held_out, len(first.test))}",
        "wall time": f"{seconds:.0f} s (held-out evaluation {eval_seconds:.0f} s)",
    }


def scorer_name(engine) -> str:
    model = getattr(engine, "model", None)  # the simulated backend has none
    return f"{engine.backend}: {model.name}" if model is not None else engine.backend


def write_report(out: Path, rows: list[dict], config: StudyConfig, settings: dict):

    descriptions = {name: VARIANTS[name].description for name in config.variants}
    return write_study_report(out, rows, config.variants, descriptions, settings)
