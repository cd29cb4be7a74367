"""`pmpo evaluate RUN_DIR`: held-out loss and accuracy of a run's prompts and the baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.api import evaluate
from pmpo_ray.evaluation.evaluate_run import check_task_data
from pmpo_ray.evaluation.label_prior import COLLAPSE_FACTOR, over_chosen
from pmpo_ray.reports.interval_text import WITHIN_NOISE, difference, figure, is_share
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
    """Plain-text table: per task and prompt, held-out CE (with its 95% interval where the
    evaluation has one), loss, generation accuracy, pairwise accuracy and option accuracy
    (plain, then per character); then each prompt's changes from the initial one with their
    paired intervals, and the label-prior flags of multiple-choice tasks."""
    lines = [
        f"{'task':<24} {'prompt':<16} {'CE [95%]':>19} {'loss':>7} {'acc':>6} {'pair':>6} "
        f"{'option':>6} {'opt/ch':>6}"
    ]
    for task_id, result in results.items():
        for row in result["prompts"]:
            ce = figure(row["heldout_ce"], (row.get("ci95") or {}).get("heldout_ce"), False)
            ce = ce or f"{row['heldout_ce']:.3f}"
            lines.append(
                f"{task_id:<24} {row['name']:<16} {ce:>19} "
                f"{row['heldout_loss']:>7.3f} {_percent(row['accuracy']):>6} "
                f"{_percent(row['pairwise_accuracy']):>6} "
                f"{_percent(row.get('option_accuracy')):>6} "
                f"{_percent(row.get('option_accuracy_norm')):>6}"
            )
    return "\n".join(lines + change_lines(results) + label_prior_lines(results))


CHANGED = (  # evaluation.json figure -> its name in the printout
    ("heldout_ce", "CE"),
    ("accuracy", "accuracy"),
    ("pairwise_accuracy", "pairwise"),
    ("option_accuracy", "option accuracy"),
    ("option_accuracy_norm", "per character"),
)


def change_lines(results: dict[str, dict]) -> list[str]:
    """`task / prompt: CE −0.12 [−0.30, +0.05] within noise; ...` per prompt compared with
    the initial one (paired 95% intervals)."""
    lines = []
    for task_id, result in results.items():
        for row in result["prompts"]:
            found = row.get("vs_initial") or {}
            parts = [
                f"{name} {_difference(found[key], is_share(key))}"
                for key, name in CHANGED
                if found.get(key) is not None
            ]
            if parts:
                lines.append(f"  {task_id} / {row['name']}: " + "; ".join(parts))
    if not lines:
        return []
    return [
        "",
        f"change from the initial prompt (paired 95% intervals, {WITHIN_NOISE} where one "
        "holds 0):",
    ] + lines


def _difference(found, share: bool) -> str:
    if isinstance(found, dict):
        return difference(found["change"], found["ci95"], share)
    return difference(found.change, found.ci95, share)


def label_prior_lines(results: dict[str, dict]) -> list[str]:
    """A warning per prompt that chooses an option label on more than COLLAPSE_FACTOR times
    its gold share (multiple-choice tasks)."""
    lines = []
    for task_id, result in results.items():
        gold = result.get("gold_shares")
        for row in result["prompts"] if gold else ():
            choices = row.get("choices")
            labels = over_chosen(choices, gold) if choices else []
            if labels:
                listed = ", ".join(
                    f"{label} {_percent(choices[label])} (gold {_percent(gold.get(label, 0))})"
                    for label in labels
                )
                lines.append(
                    f"label-prior collapse? {task_id} / {row['name']} chooses {listed}: more "
                    f"than {COLLAPSE_FACTOR:g}x the gold share"
                )
    return [""] + lines if lines else []


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
