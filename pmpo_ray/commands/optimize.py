"""`pmpo optimize CONFIG.yaml --out RUN_DIR`: the PMPO loop on one task, in this process."""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.api import optimize
from pmpo_ray.config import load_config
from pmpo_ray.jobs import OptimizeJobConfig, as_run
from pmpo_ray.run_folder.write import check_run_dir, write_task_run
from pmpo_ray.store import probe_folder, write_or_keep

FLAGS = {"optimizer.iterations": "--iterations", "optimizer.seed": "--seed"}


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
    config = as_run(load_config(OptimizeJobConfig, args.config, flags=FLAGS, **overrides))
    check_run_dir(args.out, args.overwrite)
    # The run folder is staged beside --out and renamed into place, also with --overwrite.
    probe_folder(args.out.parent, what=str(args.out))
    with ProgressBar(config.optimizer.iterations, config.task.name) as progress:
        result = optimize(config, on_round=progress.update)  # bad data fails before engines
    write_or_keep(
        args.out,
        lambda folder: write_task_run(result, folder, config, overwrite=args.overwrite),
        what="run folder",
    )
    print(
        f"task {result.task_id}: training loss {result.initial.loss:.4f} -> {result.best.loss:.4f} "
        f"({len(result.history)} iterations, {result.stop_reason})"
    )
    print(f"best prompt ({result.best.candidate_id}):\n{result.best.text}")
    print(f"wrote {args.out}")
    return 0


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
