"""`pmpo suite CONFIG --out DIR`: optimize every task of a suite together on Ray.

`python -m pipelines.optimize_suite --config CONFIG --out DIR` (the `ray job submit`
entrypoint) takes the same options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.api import optimize_suite, plan
from pmpo_ray.commands.evaluate import summary_table
from pmpo_ray.commands.overrides import add_set_option, set_overrides
from pmpo_ray.config import as_config
from pmpo_ray.jobs import SuiteConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.store import check_writable_folder
from pmpo_ray.suite.plan import render_plan


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("suite", help="optimize a suite of tasks on Ray")
    parser.add_argument("config", type=Path, help="suite YAML (see pipelines/suites/)")
    add_options(parser)
    parser.set_defaults(run=run)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="results folder to create (not with --plan)")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print what the run will cost (forward passes, tokens, replicas and their "
        "memory, wall time) and exit: no engine starts, nothing is written",
    )
    parser.add_argument(
        "--scoring-tokens-per-s",
        type=float,
        help="--plan: scored tokens per second of one scorer replica (default: the default "
        "model on this kind of CPU; measure yours with `pmpo bench` or a run's rounds.jsonl)",
    )
    parser.add_argument(
        "--generation-tokens-per-s",
        type=float,
        help="--plan: generated tokens per second of one rewriter replica",
    )
    parser.add_argument(
        "--rewrite-acceptance",
        type=float,
        help="--plan: share of rewrites that pass vetting and are scored (default: 0.73 for "
        "the built-in default model as the rewriter, measured; 1.0 for any other)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results in an existing folder once the new run has finished "
        "(it runs in OUT/.overwrite-staging; a failed run leaves the old results)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        type=resume_mode,
        metavar="auto",
        help="continue an unfinished run from its last intact round (refused if the data or "
        "settings changed); with --evaluate, finish an evaluation cut short. --resume auto: "
        "also start when --out is missing or empty, and report a finished run (a retried job)",
    )
    parser.add_argument("--iterations", type=int, help="override every task's iterations")
    add_set_option(parser, "scorer.replicas.num_replicas=2")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="then evaluate every task on its held-out split with the same warm engines",
    )
    parser.add_argument(
        "--mlflow",
        metavar="URI",
        help="log the run to MLflow at this tracking URI (sets tracking.mlflow.tracking_uri; "
        "needs pip install 'pmpo-ray[mlflow]')",
    )
    parser.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        help="the MLflow experiment (sets tracking.mlflow.experiment; default: the suite's name)",
    )


def resume_mode(value: str) -> str:
    if value != "auto":
        raise argparse.ArgumentTypeError(
            f"the only value --resume takes is auto; got {value!r} (a config file goes before "
            "--resume)"
        )
    return value


def run(args: argparse.Namespace) -> int:
    config = suite_config(args)  # a bad config or flag fails here, before Ray is imported
    if args.plan:
        suite_plan = plan(
            config,
            iterations=args.iterations,
            scoring_tokens_per_s=args.scoring_tokens_per_s,
            generation_tokens_per_s=args.generation_tokens_per_s,
            rewrite_acceptance=args.rewrite_acceptance,
        )
        print(render_plan(suite_plan))
        return 0
    if args.out is None:
        raise ValueError("--out is required (except with --plan)")
    check_writable_folder(args.out)
    result = optimize_suite(
        config,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        evaluate=args.evaluate,
        iterations=args.iterations,
    )
    if result.evaluation is not None:
        print(summary_table(result.evaluation))
    for task_id, row in result.summary.items():
        print(
            f"{task_id}: {row['initial_loss']:.4f} -> {row['best_loss']:.4f} ({row['stop_reason']})"
        )
    print(f"wrote {args.out}")
    return 0


def suite_config(args: argparse.Namespace):
    """The suite config with the `--set` values applied, and `--iterations` checked; errors
    name the flag, not the YAML file."""
    overrides, flags = set_overrides(args.set)
    for name, (key, flag) in MLFLOW_FLAGS.items():
        if getattr(args, name, None) is not None:
            overrides[key], flags[key] = getattr(args, name), flag
    config = as_config(SuiteConfig, args.config, overrides, flags=flags)
    if args.iterations is not None:  # applied to every task by the suite run itself
        as_config(OptimizerConfig, {}, {"iterations": args.iterations}, flags=ITERATIONS_FLAG)
    return config


ITERATIONS_FLAG = {"iterations": "--iterations"}
# argparse name -> (the config field it sets, the flag)
MLFLOW_FLAGS = {
    "mlflow": ("tracking.mlflow.tracking_uri", "--mlflow"),
    "mlflow_experiment": ("tracking.mlflow.experiment", "--mlflow-experiment"),
}
