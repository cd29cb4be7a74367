"""The `pmpo` command: one subcommand per job, each in pmpo_ray/commands/, each a thin wrapper
over the Python API (pmpo_ray/api.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pmpo_ray.commands import evaluate, model, optimize, report, score, suite

COMMANDS = (score, optimize, suite, evaluate, model, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmpo", description="PMPO prompt optimization")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine progress")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def run_command(name: str, run, args, quiet_engines: str = "WARNING") -> int:
    """Run one command: user errors print one line and exit 2, never a traceback."""
    from pmpo_ray.engines.models import ModelNotFoundError

    if not args.verbose:  # vLLM logs every engine step at INFO; users want the results
        os.environ.setdefault("VLLM_LOGGING_LEVEL", quiet_engines)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return run(args)
    except (ValueError, ModelNotFoundError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # every suite replica repeats vLLM's CPU-setup warnings; errors still show
    quiet = "ERROR" if args.command == "suite" else "WARNING"
    return run_command(f"pmpo {args.command}", args.run, args, quiet_engines=quiet)


if __name__ == "__main__":
    sys.exit(main())
