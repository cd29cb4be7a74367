"""`pmpo evaluate RUN_DIR`: held-out loss and accuracy of a run's prompts and the baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.api import evaluate
from pmpo_ray.evaluation.evaluate_run import check_task_data
from pmpo_ray.run_folder.layout import task_dirs
from pmpo_ray.run_folder.read import read_run_folder, require_finished
from pmpo_ray.run_folder.swap import finish_interrupted_swap
from pmpo_ray.store import check_writable_folder


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a run's initial, optimized and baseline prompts on held-out data"
    )
    parser.add_argument(
        "run_dir",
        type=Path,
        help="a `pmpo optimize` folder, a suite folder, or one task folder of a suite",
    )
    parser.add_argument("--max-examples", type=int, help="evaluate on the first N held-out only")
    parser.add_argument("--max-answer-tokens", type=int, help="generation budget per answer")
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip greedy generation (loss only)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    finish_interrupted_swap(args.run_dir)  # a killed --overwrite swap, before reading the folder
    for folder in task_dirs(args.run_dir)[1]:  # results go here: fail before the engine loads
        check_writable_folder(folder)
    require_finished(args.run_dir)
    check_task_data(read_run_folder(args.run_dir, evaluations=False))  # so does moved data
    results = evaluate(
        args.run_dir,
        max_examples=args.max_examples,
        max_answer_tokens=args.max_answer_tokens,
        accuracy=False if args.no_accuracy else None,
    )
    print(summary_table(results))
    print(f"wrote evaluation.json and predictions.parquet per task in {args.run_dir}")
    return 0


def summary_table(results: dict[str, dict]) -> str:
    """Plain-text table: per task and prompt, held-out CE, loss, generation accuracy,
    pairwise accuracy and option accuracy (plain, then per character)."""
    lines = [
        f"{'task':<24} {'prompt':<16} {'CE':>7} {'loss':>7} {'acc':>6} {'pair':>6} "
        f"{'option':>6} {'opt/ch':>6}"
    ]
    for task_id, result in results.items():
        for row in result["prompts"]:
            lines.append(
                f"{task_id:<24} {row['name']:<16} {row['heldout_ce']:>7.3f} "
                f"{row['heldout_loss']:>7.3f} {_percent(row['accuracy']):>6} "
                f"{_percent(row['pairwise_accuracy']):>6} "
                f"{_percent(row.get('option_accuracy')):>6} "
                f"{_percent(row.get('option_accuracy_norm')):>6}"
            )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
