"""The Python API's argument handling, on a fake engine client: configs as objects, mappings or
YAML paths; job files supply defaults; engines of the wrong kind are refused in one line."""

from pathlib import Path

import pytest

import pmpo_ray
from pmpo_ray import OptimizerConfig, TaskConfig
from pmpo_ray.config import as_config
from pmpo_ray.jobs import SuiteConfig
from tests.fakes import FakeEngine, scripted_rewrites

ROOT = Path(__file__).resolve().parents[1]
TASK = TaskConfig(
    name="sports",
    data="builtin:bbh/sports_understanding.json",
    initial_prompt="Think.",
    max_train=6,
)


def test_task_config_with_optimizer_as_a_mapping():
    engine = FakeEngine(scripted_rewrites)
    result = pmpo_ray.optimize(
        TASK, optimizer={"iterations": 1, "hard_cases": 2, "rewrites_per_case": 2}, engines=engine
    )
    assert result.task_id == "sports" and len(result.history) == 1
    assert len(result.history[0].hard_cases["init"]) == 2
    assert result.work.forward_passes == sum(engine.score_calls)


def test_job_yaml_supplies_the_optimizer(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        "task:\n  name: nav\n  data: builtin:bbh/navigate.json\n  format: multiple_choice\n"
        "  initial_prompt: Think.\n  max_train: 5\n"
        "optimizer:\n  iterations: 2\n  hard_cases: 1\n  rewrites_per_case: 1\n"
    )
    result = pmpo_ray.optimize(job, engines=FakeEngine(scripted_rewrites))
    assert result.task_id == "nav" and len(result.history) == 2
    assert all(len(ids) == 1 for ids in result.history[0].hard_cases.values())


def test_loaded_task_and_rounds_callback():
    task = pmpo_ray.load_task(TASK)
    seen = []
    pmpo_ray.optimize(
        task,
        optimizer=OptimizerConfig(iterations=1, hard_cases=2, rewrites_per_case=1),
        engines=FakeEngine(scripted_rewrites),
        on_round=lambda index, runs, stats: seen.append((index, stats["active_tasks"])),
    )
    assert seen == [(1, 1), (2, 1)]  # analyze, then rewrite


def test_engines_of_the_wrong_kind_are_refused():
    with pytest.raises(TypeError, match="engines must be an open engine client .* got str"):
        pmpo_ray.optimize(TASK, optimizer={"iterations": 1}, engines="vllm")
    with pytest.raises(TypeError, match="scorer must be a PoolConfig or an engine config"):
        pmpo_ray.optimize(TASK, optimizer={"iterations": 1}, scorer="vllm")
    with pytest.raises(TypeError, match="either engines .* or pools to open, not both"):
        pmpo_ray.optimize(TASK, engines=FakeEngine(None), scorer=pmpo_ray.PoolConfig())


def test_bad_optimizer_value_names_the_field():
    with pytest.raises(ValueError, match="field 'iterations'"):
        pmpo_ray.optimize(TASK, optimizer={"iterations": -1}, engines=FakeEngine(None))


def test_suite_config_as_path_object_or_overrides():
    path = ROOT / "pipelines" / "suites" / "tiny.yaml"
    loaded = as_config(SuiteConfig, path)
    assert as_config(SuiteConfig, loaded) is loaded
    changed = as_config(SuiteConfig, loaded, {"scorer.replicas.num_replicas": 3})
    assert changed.scorer.replicas.num_replicas == 3 and loaded.scorer.replicas.num_replicas == 1
    assert as_config(SuiteConfig, str(path), {"optimizer.iterations": 7}).optimizer.iterations == 7


def test_suite_command_fails_in_one_line_before_ray(tmp_path, capsys):
    from pmpo_ray.cli import main

    bad = tmp_path / "suite.yaml"
    bad.write_text("name: s\ntasks: []\n")
    assert main(["suite", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pmpo suite: error: ") and "field 'tasks'" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
