"""A suite task's resolved job config: exactly what its task folder's config.yaml holds.

Each task folder of a suite carries its own `OptimizeJobConfig` (its task and optimizer, the
suite's engines, prompt format and evaluation), so it evaluates and reports on its own, just
like the folder of a `pmpo optimize` run.
"""

from __future__ import annotations

from pmpo_ray.pmpo.config import OptimizeJobConfig
from pmpo_ray.suite.config import SuiteConfig, SuiteTask


def task_job_config(suite: SuiteConfig, entry: SuiteTask) -> OptimizeJobConfig:
    """`entry`, one of `suite.tasks`, as the job config it runs under."""
    return OptimizeJobConfig(
        task=entry.task,
        optimizer=suite.optimizer_for(entry),
        scorer=suite.scorer.engine,
        rewriter=suite.rewriter.engine if suite.rewriter else None,
        prompt_format=suite.prompt_format,
        evaluation=suite.evaluation,
    )
