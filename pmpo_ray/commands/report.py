"""`pmpo report RUN_DIR`: turn a finished run (one task or a suite) into report.md/report.html.

Works on a run that was only optimized (held-out columns then say how to evaluate it) and
picks up `evaluation.json` from each task folder once `pmpo evaluate` has written one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.reports.build import write_report


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write report.md and report.html for a run")
    parser.add_argument("run_dir", type=Path, help="a run folder from `pmpo optimize` or a suite")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    files = write_report(args.run_dir)
    print(files.html)
    print(files.markdown)
    return 0
