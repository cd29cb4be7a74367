"""`pmpo suite CONFIG --plan` / `pmpo_ray.plan`: what a suite will cost, before any engine
starts. (Against a real run: tests/test_cluster_job.py compares the tiny suite's plan with
the forward passes its job spends.)"""

import pmpo_ray
from pmpo_ray.cli import main
from pmpo_ray.engines.hf_engine import HfEngine
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmEngine
from tests.failures import suite_config

TINY = "pipelines/suites/tiny.yaml"


def test_the_plan_counts_what_a_cooperative_rewriter_run_spends(tmp_path):
    """The plan's dry run is the loop itself: a run on the simulated backend spends exactly
    the forward passes and generation requests it predicts."""
    config = pmpo_ray.SuiteConfig.model_validate(suite_config())
    simulated = config.model_copy(
        update={"scorer": pmpo_ray.PoolConfig.model_validate({"engine": {"backend": "simulated"}})}
    )
    plan = pmpo_ray.plan(simulated)
    with pmpo_ray.open_engines(simulated.scorer) as client:
        result = pmpo_ray.optimize_suite(simulated, out=tmp_path / "run", engines=client)
    spent = {r.task_id: r.work for r in result.results}
    for task in plan.tasks:
        assert task.forward_passes == spent[task.task_id].forward_passes
        assert task.generation_requests == spent[task.task_id].generation_requests
        assert task.generated_tokens >= spent[task.task_id].tokens_generated


def test_the_plan_command_prints_per_task_and_totals_and_starts_nothing(capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("--plan started an engine or a replica")

    # Every way to a model or a replica is closed: the plan's dry run needs none of them.
    monkeypatch.setattr(ReplicaPool, "start", never)
    monkeypatch.setattr(VllmEngine, "__init__", never)
    monkeypatch.setattr(HfEngine, "__init__", never)
    assert main(["suite", TINY, "--plan", "--iterations", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("navigate", "sports_understanding", "total", "scorer pool", "GiB", "wall time"):
        assert word in out
    plan = pmpo_ray.plan(TINY, iterations=1, scoring_tokens_per_s=1e6, generation_tokens_per_s=1e6)
    slow = pmpo_ray.plan(TINY, iterations=1)
    assert plan.total("forward_passes") == slow.total("forward_passes") > 0
    assert plan.wall_seconds < slow.wall_seconds
    assert all(task.iterations == 1 for task in plan.tasks)


def test_a_suite_without_out_or_plan_is_refused_in_one_line(capsys):
    assert main(["suite", TINY]) == 2
    assert "--out is required (except with --plan)" in capsys.readouterr().err
