"""Optimize every task of a suite together on shared engine pools in Ray.

    python -m pipelines.optimize_suite --config pipelines/suites/tiny.yaml --out runs/tiny

Starts Ray locally, or joins the cluster in $RAY_ADDRESS, so the same command is a
`ray job submit --working-dir . -- python -m pipelines.optimize_suite ...` entrypoint. The work
is `pmpo_ray.optimize_suite`; this file only reads the command line (`pmpo suite` does too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pmpo_ray.cli import run_command
from pmpo_ray.commands import suite


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="suite YAML")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine progress")
    suite.add_options(parser)
    args = parser.parse_args(argv)
    return run_command("optimize_suite", suite.run, args, quiet_engines="ERROR")


if __name__ == "__main__":
    sys.exit(main())
