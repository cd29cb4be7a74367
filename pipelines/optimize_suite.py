"""Optimize every task of a suite together on shared engine pools in Ray.

    python -m pipelines.optimize_suite --config pipelines/suites/tiny.yaml --out runs/tiny

Starts Ray locally, or joins the cluster in $RAY_ADDRESS, so the same command is a
`ray job submit --working-dir . -- python -m pipelines.optimize_suite ...` entrypoint. The work
is `pmpo_ray.optimize_suite`; this file only reads the command line (`pmpo suite` does too).
"""

from __future__ import annotations

import sys

from pmpo_ray.cli import job_entrypoint
from pmpo_ray.commands import suite


def main(argv=None) -> int:
    return job_entrypoint("optimize_suite", suite, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
