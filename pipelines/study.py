"""Run an ablation study: PMPO variants over the same suite, seeds and forward-pass budget.

    python -m pipelines.study --config pipelines/studies/bbh8.yaml --out runs/study

Starts Ray locally, or joins the cluster in $RAY_ADDRESS (a `ray job submit` entrypoint like
the suite job). Writes OUT/results.jsonl (one row per task, variant and seed), OUT/study.md
and OUT/study.html with plots, and OUT/runs/ (the suite of every run, resumable with
--resume); prints the average table at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pmpo_ray.cli import run_command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="study YAML")
    parser.add_argument("--out", required=True, type=Path, help="study folder to create")
    parser.add_argument(
        "--resume", action="store_true", help="continue a study cut short (its runs resume)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the runs of an earlier study in OUT"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted key, e.g. forward_pass_budget=300 or "
        "suite.evaluation.max_examples=20",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine progress")
    args = parser.parse_args(argv)
    return run_command("study", run, args, quiet_engines="ERROR")


def run(args: argparse.Namespace) -> int:
    from pmpo_ray.commands.suite import parse_override
    from pmpo_ray.config import as_config
    from pmpo_ray.store import check_writable_folder
    from pmpo_ray.study.config import StudyConfig

    overrides = dict(parse_override(item) for item in args.set)
    flags = {key: f"--set {key}" for key in overrides}
    config = as_config(StudyConfig, args.config, overrides, flags=flags)  # fails before Ray
    check_writable_folder(args.out)

    from pmpo_ray.study.report import average_table_text
    from pmpo_ray.study.run import run_study

    result = run_study(config, out=args.out, resume=args.resume, overwrite=args.overwrite)
    print(average_table_text(list(result.rows), config.variants))
    print(f"wrote {result.report[0]} and {result.report[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
