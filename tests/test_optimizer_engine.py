"""Two PMPO iterations on a built-in BBH sample with the real default model and vLLM."""

import math

import pytest

from pmpo_ray import optimize
from pmpo_ray.engines.in_process import InProcessClient
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.task import load_task

pytestmark = pytest.mark.engine


def test_two_iterations_on_navigate(vllm_engine):
    task = load_task(
        TaskConfig(
            name="navigate",
            data="builtin:bbh/navigate.json",
            format="multiple_choice",
            description="Decide whether the instructions return you to the starting point.",
            initial_prompt="Let's think step by step.",
            max_train=8,
        )
    )
    config = OptimizerConfig(
        iterations=2, hard_cases=2, rewrites_per_case=3, max_rewrite_tokens=96, seed=1
    )
    result = optimize(task, optimizer=config, engines=InProcessClient(vllm_engine))

    assert len(result.history) == 2
    assert result.best.loss <= result.initial.loss
    for record in result.history:
        assert len(record.candidates) + len(record.rejected) == len(record.parent_ids) * (1 + 2 * 3)
        assert all(math.isfinite(c.loss) and c.loss > 0 for c in record.candidates)
        assert record.masking_results and record.masking_results[0].method in ("model", "sentences")
        assert record.work.generation_requests > 0 and record.work.tokens_generated > 0
    assert result.work.forward_passes >= 2 * len(task.train)  # the initial prompt, its masks
    for candidate_id, parent in result.lineage.items():
        assert parent is None or parent in result.lineage
    # greedy selection keeps the lowest loss ever scored
    assert result.best.loss == min(c.loss for r in result.history for c in r.candidates)
