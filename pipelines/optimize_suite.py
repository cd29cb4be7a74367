"""Optimize every task of a suite together on shared engine pools in Ray.

    python -m pipelines.optimize_suite --config pipelines/suites/tiny.yaml --out runs/tiny

Starts Ray locally, or joins the cluster in $RAY_ADDRESS (so the same command is a
`ray job submit --working-dir . -- python -m pipelines.optimize_suite ...` entrypoint).
Engines start once, in long-lived replica actors; each round sends all tasks' generation
requests through one Ray Data job and all scoring requests through another.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from pmpo_ray.config import load_config
from pmpo_ray.suite_config import SuiteConfig


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="suite YAML")
    parser.add_argument("--out", required=True, type=Path, help="results folder to create")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results in an existing folder"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an unfinished run from its last round"
    )
    parser.add_argument("--iterations", type=int, help="override every task's iterations")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Ray Data progress and engine logs"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. scorer.replicas.num_replicas=2",
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="then evaluate every task on its held-out split with the same warm engines",
    )
    return parser.parse_args(argv)


def run(args) -> dict:
    import ray
    from transformers import AutoTokenizer

    from pmpo_ray.commands.evaluate import summary_table
    from pmpo_ray.engines.models import resolve_model_path
    from pmpo_ray.evaluation.evaluate_run import evaluate_run
    from pmpo_ray.evaluation.run_folder import read_run_folder
    from pmpo_ray.pipeline import RayDataEngines
    from pmpo_ray.pmpo.rounds import run_rounds
    from pmpo_ray.pmpo.task_run import TaskRun
    from pmpo_ray.population import PopulationManager
    from pmpo_ray.ray_session import connect_ray
    from pmpo_ray.tasks.task import load_task

    overrides = dict(parse_override(item) for item in args.set)
    overrides["optimizer.iterations"] = args.iterations
    config = load_config(SuiteConfig, args.config, **overrides)
    tasks = [load_task(t.task) for t in config.tasks]  # bad data fails before any engine starts
    prepare_out_dir(args.out, overwrite=args.overwrite, resume=args.resume)
    started_ray = connect_ray(config.ray)
    if not args.verbose:
        quiet_ray_data()
    pools = {}
    try:
        pools.update(start_pools(config))
        engines = RayDataEngines(pools["scorer"], pools.get("rewriter"), config.batch_rows)
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.scorer.engine.model))
        runs = [
            TaskRun(task, _optimizer(config, entry, args), tokenizer, config.prompt_format)
            for task, entry in zip(tasks, config.tasks)
        ]
        manager = PopulationManager(runs, args.out, pools)
        rounds_done = manager.resume() if args.resume else 0
        run_rounds(
            runs,
            generator=engines,
            scorer=engines,
            on_round=manager.on_round,
            rounds_done=rounds_done,
        )
        summary = manager.finish(config.model_dump(mode="json"))
        if args.evaluate:
            evaluation = evaluate_run(
                read_run_folder(args.out), scorer=engines, generator=engines, tokenizer=tokenizer
            )
            print(summary_table(evaluation))
        return summary
    finally:
        for pool in pools.values():
            pool.shutdown()
        if started_ray:
            ray.shutdown()


def quiet_ray_data() -> None:
    """Ray Data logs every job's progress; a suite runs hundreds of small jobs, and the
    per-round progress line says what users need. Its warnings about free CPUs and small
    inputs are expected here: pools hold the CPUs on purpose (pipeline.check_free_cpu guards
    the case that would hang), and a round's generation table is often one batch."""
    import warnings

    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks")


def start_pools(config: SuiteConfig) -> dict:
    """The long-lived engine actors: a scorer pool, and a rewriter pool when configured."""
    from pmpo_ray.engines.replicas import ReplicaPool

    pools = {}
    try:
        for name in ("scorer", "rewriter"):
            pool_config = getattr(config, name)
            if pool_config is not None:
                pools[name] = ReplicaPool.start(
                    pool_config.engine, pool_config.replicas, config.prompt_format
                )
    except BaseException:
        for pool in pools.values():
            pool.shutdown()
        raise
    return pools


# What a suite job writes; --overwrite removes exactly these, nothing else in the folder.
RESULT_NAMES = (
    "state",
    "tasks",
    "rounds.jsonl",
    "suite.json",
    "config.yaml",
    "report.md",
    "report.html",
    "report_files",
)


def prepare_out_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    if overwrite and resume:
        raise ValueError("--overwrite and --resume exclude each other")
    if resume:
        if not (out / "state").is_dir():
            raise ValueError(f"{out}: nothing to resume (no state/ folder from an earlier run)")
        if (out / "suite.json").exists():
            raise ValueError(f"{out}: this suite already finished (suite.json exists)")
        return
    if out.exists() and not overwrite:
        raise ValueError(
            f"{out} exists; choose another --out, pass --overwrite, or --resume an unfinished run"
        )
    for name in RESULT_NAMES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def parse_override(item: str) -> tuple[str, object]:
    """'a.b=2' -> ('a.b', 2): the value is read as YAML, so numbers and lists keep their type."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. scorer.replicas.num_replicas=2")
    return key.strip(), yaml.safe_load(value)


def _optimizer(config: SuiteConfig, entry, args):
    optimizer = config.optimizer_for(entry)
    if args.iterations is not None:
        optimizer = optimizer.model_copy(update={"iterations": args.iterations})
    return optimizer


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:  # every replica repeats vLLM's CPU-setup warnings; errors still show
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        summary = run(args)
    except ValueError as error:
        print(f"optimize_suite: error: {error}", file=sys.stderr)
        return 2
    for task_id, row in summary.items():
        print(
            f"{task_id}: {row['initial_loss']:.4f} -> {row['best_loss']:.4f} ({row['stop_reason']})"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
