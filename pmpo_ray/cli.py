"""The `pmpo` command: one subcommand per job, each in pmpo_ray/commands/, each a thin wrapper
over the Python API (pmpo_ray/api.py)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from pmpo_ray.commands import evaluate, model, optimize, report, score, study, suite
from pmpo_ray.config import format_validation_error
from pmpo_ray.engines.models import ModelNotFoundError
from pmpo_ray.errors import PoolDownError, ReplicaError, is_from_ray, one_line
from pmpo_ray.run_folder.saved import evaluations_saved, suite_saved
from pmpo_ray.studies.run import study_saved

COMMANDS = (score, optimize, suite, study, evaluate, model, report)
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmpo", description="PMPO prompt optimization")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine progress")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def run_command(name: str, run, args, quiet_engines: str = "WARNING") -> int:
    """Run one command: user errors print one line and exit 2, never a traceback; Ctrl-C
    prints one line (what was saved, how to continue) and exits 130."""

    if not args.verbose:  # vLLM logs every engine step at INFO; users want the results
        os.environ.setdefault("VLLM_LOGGING_LEVEL", quiet_engines)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return run(args)
    except KeyboardInterrupt:  # Ctrl-C: what was saved, and how to go on, in one line
        ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second one cannot cut it
        try:
            line = interrupted_line(run, args)
            print(f"{name}: interrupted; {line}", file=sys.stderr, flush=True)
        finally:
            signal.signal(signal.SIGINT, ignored)
        return INTERRUPTED
    except ValidationError as error:  # a flag value checked by a config the command built
        print(f"{name}: error: {flag_validation_message(error, args)}", file=sys.stderr)
        return 2
    except Exception as error:
        message, users = error_line(error, (ValueError, ModelNotFoundError))
        print(f"{name}: error: {message}", file=sys.stderr)
        return 2 if users else 1


def interrupted_line(run, args: argparse.Namespace) -> str:
    """What a command (`run`, a commands/ module's) stopped by Ctrl-C has saved, and how to
    continue (run_folder/saved.py)."""
    command = getattr(run, "__module__", "").rsplit(".", 1)[-1]
    out = getattr(args, "out", None)
    overwrite = bool(getattr(args, "overwrite", False))
    if command == "suite" and out is not None:
        return suite_saved(out, overwrite=overwrite)
    if command == "study" and out is not None:
        return study_saved(out, overwrite=overwrite)
    if command == "optimize":
        return (
            "nothing was saved: `pmpo optimize` writes its run folder when the run ends "
            "(`pmpo suite` checkpoints every round and can --resume)"
        )
    if command == "evaluate":
        return evaluations_saved(args.run_dir)
    return "nothing was saved"


def error_line(error: Exception, user_errors: tuple) -> tuple[str, bool]:
    """(one line, is it the user's error) for errors a command reports without a traceback:
    the user's (bad input, also from inside a replica), a pool left without replicas, and
    anything raised inside Ray (its root cause; the full trace in a log file). Anything else
    is a bug: re-raised."""

    if isinstance(error, user_errors) and not is_from_ray(error):  # Ray's wrapper of a
        return str(error), True  # ValueError is a ValueError too, with pages of text
    if isinstance(error, PoolDownError):
        return str(error), False
    if isinstance(error, ReplicaError) or is_from_ray(error):
        return one_line(error), False
    raise error


def flag_validation_message(error: ValidationError, args: argparse.Namespace) -> str:
    """A pydantic error as one line per field, each blamed on the flag of the same name
    (`max_examples` -> `--max-examples`) when the user gave one."""
    paths = {".".join(str(part) for part in item["loc"]) for item in error.errors()}
    flags = {
        path: "--" + path.rsplit(".", 1)[-1].replace("_", "-")
        for path in paths
        if getattr(args, path.rsplit(".", 1)[-1], None) is not None
    }
    return format_validation_error(error, "command line", flags)


def job_entrypoint(name: str, command, description: str, argv: list[str] | None) -> int:
    """A `ray job submit` entrypoint (pipelines/): the options of `command` (a module of
    commands/, with `add_options` and `run`) with its config file as --config."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", required=True, type=Path, help=f"{command.__name__.rsplit('.', 1)[-1]} YAML"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine progress")
    command.add_options(parser)
    args = parser.parse_args(argv)
    # every replica repeats vLLM's CPU-setup warnings; errors still show
    return run_command(name, command.run, args, quiet_engines="ERROR")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # every suite replica repeats vLLM's CPU-setup warnings; errors still show
    quiet = "ERROR" if args.command in ("suite", "study") else "WARNING"
    return run_command(f"pmpo {args.command}", args.run, args, quiet_engines=quiet)


if __name__ == "__main__":
    sys.exit(main())
