"""`pmpo optimize CONFIG.yaml --out RUN_DIR`: the PMPO loop on one task, in this process."""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.api import optimize
from pmpo_ray.config import load_config
from pmpo_ray.engines.scoring import check_rows_fit
from pmpo_ray.jobs import OptimizeJobConfig, as_run
from pmpo_ray.pmpo.next_round import plural
from pmpo_ray.requests import score_requests
from pmpo_ray.run_folder.write import check_run_dir, write_task_run
from pmpo_ray.store import probe_folder, write_or_keep
from pmpo_ray.tasks.task import Task, load_task

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
    check_run_dir(args.out, args.overwrite)  # a link must point to a folder: it is followed
    # The run folder is staged beside --out (the folder a link points to) and renamed into
    # place, also with --overwrite.
    folder = args.out.resolve() if args.out.is_symlink() else args.out
    probe_folder(folder.parent, what=str(args.out))
    task = load_task(config.task)  # bad data fails before engines
    check_task_rows_fit(task, config)  # so does a row the scorer's window cannot hold
    with ProgressBar(config.optimizer.iterations, config.task.name) as progress:
        result = optimize(
            task,
            optimizer=config.optimizer,
            scorer=config.scorer,
            rewriter=config.rewriter,
            prompt_format=config.prompt_format,
            on_round=progress.update,
        )
    write_or_keep(
        args.out,
        lambda folder: write_task_run(result, folder, config, overwrite=args.overwrite),
        what="run folder",
    )
    print(
        f"task {result.task_id}: training loss {result.initial.loss:.4f} -> {result.best.loss:.4f} "
        f"({plural(len(result.history), 'iteration')}, {result.stop_reason})"
    )
    print(f"best prompt ({result.best.candidate_id}):\n{result.best.text}")
    print(f"wrote {args.out}")
    return 0


def check_task_rows_fit(task: Task, config: OptimizeJobConfig) -> None:
    """Every training and held-out example under the initial prompt fits the scorer's window
    (its tokenizer alone, before the engine loads, as a suite checks its tasks); a row that
    does not is named in one line with the file it comes from."""
    sources = [(task.train + task.test, config.task.data)]
    if config.task.test_data is not None:  # held-out rows come from a file of their own
        sources = [(task.train, config.task.data), (task.test, config.task.test_data)]
    for examples, source in sources:
        table = score_requests(
            [("initial", task.initial_prompt)],
            examples,
            task_id=task.task_id,
            kind="candidate",
            role=config.prompt_format.role,
            with_rejected=True,
        )
        try:
            check_rows_fit([table], config.scorer.engine, config.prompt_format)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None


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
