"""Run an ablation study: PMPO variants over the same suite, seeds and forward-pass budget.

    python -m pipelines.study --config pipelines/studies/bbh8.yaml --out runs/study

Starts Ray locally, or joins the cluster in $RAY_ADDRESS (a `ray job submit` entrypoint like
the suite job). Writes OUT/results.jsonl (one row per task, variant and seed), OUT/study.md
and OUT/study.html with plots, and OUT/runs/ (the suite of every run, resumable with
--resume); prints the average table at the end. The work is `pmpo_ray.study`; this file
only reads the command line (`pmpo study` does too).
"""

from __future__ import annotations

import sys

from pmpo_ray.cli import job_entrypoint
from pmpo_ray.commands import study


def main(argv=None) -> int:
    return job_entrypoint("study", study, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
