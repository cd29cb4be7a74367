"""`pmpo study CONFIG --out DIR`: an ablation study (PMPO variants over the same suite, seeds
and forward-pass budget) on Ray.

`python -m pipelines.study --config CONFIG --out DIR` (the `ray job submit` entrypoint) takes
the same options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.api import study
from pmpo_ray.commands.overrides import add_set_option, set_overrides
from pmpo_ray.config import as_config
from pmpo_ray.store import check_writable_folder
from pmpo_ray.studies.config import StudyConfig
from pmpo_ray.studies.report import average_table_text


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("study", help="run an ablation study of PMPO variants on Ray")
    parser.add_argument("config", type=Path, help="study YAML (see pipelines/studies/)")
    add_options(parser)
    parser.set_defaults(run=run)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="study folder to create")
    parser.add_argument(
        "--resume", action="store_true", help="continue a study cut short (its runs resume)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the runs of an earlier study in OUT"
    )
    add_set_option(parser, "forward_pass_budget=300 or suite.evaluation.max_examples=20")


def run(args: argparse.Namespace) -> int:
    overrides, flags = set_overrides(args.set)
    config = as_config(StudyConfig, args.config, overrides, flags=flags)  # fails before Ray
    check_writable_folder(args.out)
    result = study(config, out=args.out, resume=args.resume, overwrite=args.overwrite)
    print(average_table_text(list(result.rows), config.variants))
    print(f"wrote {result.report[0]} and {result.report[1]}")
    return 0
