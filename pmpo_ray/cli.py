"""The `pmpo` command: one subcommand per job, each in pmpo_ray/commands/."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pmpo_ray.commands import evaluate, model, optimize, report, score
from pmpo_ray.engines.models import ModelNotFoundError

COMMANDS = (score, optimize, evaluate, model, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmpo", description="PMPO prompt optimization")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine progress")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # vLLM logs every engine step at INFO; users want the results
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.run(args)
    except (ValueError, ModelNotFoundError) as error:
        print(f"pmpo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
