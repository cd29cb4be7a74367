"""`pmpo optimize CONFIG.yaml --out RUN_DIR`: the PMPO loop on one task, in this process."""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.config import load_config
from pmpo_ray.pmpo.config import OptimizeJobConfig
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.run_files import check_run_dir, write_run
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.tasks.task import load_task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("optimize", help="optimize one task's prompt")
    parser.add_argument("config", type=Path, help="YAML OptimizeJobConfig (see pipelines/tasks/)")
    parser.add_argument("--out", required=True, type=Path, help="run folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--iterations", type=int, help="override optimizer.iterations")
    parser.add_argument("--seed", type=int, help="override optimizer.seed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"optimizer.iterations": args.iterations, "optimizer.seed": args.seed}
    config = load_config(OptimizeJobConfig, args.config, **overrides)
    task = load_task(config.task)
    check_run_dir(args.out, args.overwrite)
    scorer, generator = open_engines(config)
    try:
        task_run = TaskRun(task, config.optimizer, scorer.tokenizer, config.prompt_format)
        with ProgressBar(config.optimizer.iterations, task.task_id) as progress:
            [result] = run_rounds(
                [task_run], generator=generator, scorer=scorer, on_round=progress.update
            )
    finally:
        for engine in {id(scorer): scorer, id(generator): generator}.values():
            engine.close()
    write_run(result, args.out, config.model_dump(mode="json"), overwrite=args.overwrite)
    print(
        f"task {result.task_id}: training loss {result.initial.loss:.4f} -> {result.best.loss:.4f} "
        f"({len(result.history)} iterations, {result.stop_reason})"
    )
    print(f"best prompt ({result.best.candidate_id}):\n{result.best.text}")
    print(f"wrote {args.out}")
    return 0


def open_engines(config: OptimizeJobConfig):
    """The scorer, and the rewriter (the same engine unless configured otherwise)."""
    from pmpo_ray.engines.factory import build_engine

    scorer = build_engine(config.scorer, config.prompt_format)
    if config.rewriter is None or config.rewriter == config.scorer:
        return scorer, scorer
    return scorer, build_engine(config.rewriter, config.prompt_format)


class ProgressBar:
    """A tqdm bar over iterations showing the current best training loss."""

    def __init__(self, total: int, task_id: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=task_id, unit="iter")

    def update(self, round_index: int, runs, stats: dict) -> None:
        run = runs[0]
        self.bar.n = len(run.history)
        if run.population:
            self.bar.set_postfix(loss=f"{run.population[0].loss:.4f}", round=round_index)
        self.bar.refresh()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
