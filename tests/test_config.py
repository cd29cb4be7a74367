import importlib
import pkgutil

import pytest

import pmpo_ray
from pmpo_ray.config import FrozenConfig, load_config
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.jobs import OptimizeJobConfig, ScoreJobConfig


def all_config_classes():
    """Every FrozenConfig subclass defined anywhere in the package (imports are light)."""
    for module in pkgutil.walk_packages(pmpo_ray.__path__, "pmpo_ray."):
        importlib.import_module(module.name)
    found, todo = [], [FrozenConfig]
    while todo:
        for subclass in todo.pop().__subclasses__():
            found.append(subclass)
            todo.append(subclass)
    assert len(found) > 10
    return found


def test_every_field_has_a_description():
    for cls in all_config_classes():
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_configs_are_frozen():
    config = VllmConfig()
    with pytest.raises(Exception):
        config.seed = 3


def test_unknown_field_is_named_with_its_path(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text("scorer:\n  engine:\n    model:\n      nmae: foo\n")
    with pytest.raises(
        ValueError, match=r"scoring.yaml: field 'scorer.engine.model.nmae': Extra inputs"
    ):
        load_config(ScoreJobConfig, path)


def test_unknown_backend_is_named(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text("scorer:\n  engine:\n    backend: tgi\n")
    with pytest.raises(
        ValueError,
        match=r"field 'scorer.engine.backend': backend must be one of vllm, hf, simulated, "
        r"openai; got 'tgi'",
    ):
        load_config(ScoreJobConfig, path)


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text("scorer:\n  engine:\n    backend: hf\n    seed: 5\n")
    config = load_config(
        ScoreJobConfig, path, **{"scorer.engine.backend": "vllm", "scorer.engine.model.name": "/m"}
    )
    engine = config.scorer.engine
    assert (engine.backend, engine.seed, engine.model.name) == (
        "vllm",
        5,
        "/m",
    )


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match=r"config .*missing.yaml: missing"):
        load_config(ScoreJobConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping at the top level"):
        load_config(ScoreJobConfig, bad)


def test_backend_knobs_belong_to_their_backend(tmp_path):
    """Each backend validates its own config class: a vLLM-only knob on the transformers
    backend is an error naming the field, not silently carried."""
    path = tmp_path / "scoring.yaml"
    path.write_text("scorer:\n  engine:\n    backend: hf\n    kv_cache_gib: 2\n")
    with pytest.raises(ValueError, match=r"field 'scorer.engine.kv_cache_gib': Extra inputs"):
        load_config(ScoreJobConfig, path)
    path.write_text("scorer:\n  engine:\n    kv_cache_gib: 2\n")  # no backend: vLLM, the default
    config = load_config(ScoreJobConfig, path)
    assert (config.scorer.engine.backend, config.scorer.engine.kv_cache_gib) == ("vllm", 2)
    assert type(config.scorer.engine) is VllmConfig


def test_moved_keys_name_their_new_spelling(tmp_path):
    """Every root names its scorer as a pool now; a config in an old shape fails in one line
    that gives the new spelling."""
    path = tmp_path / "scoring.yaml"
    path.write_text("engine:\n  backend: hf\n")
    with pytest.raises(ValueError, match=r"`engine` moved: write `scorer.engine` instead") as info:
        load_config(ScoreJobConfig, path)
    assert len(str(info.value).splitlines()) == 1
    job = tmp_path / "job.yaml"
    job.write_text("task: {name: t, data: d.jsonl, initial_prompt: p}\nscorer:\n  backend: hf\n")
    with pytest.raises(
        ValueError,
        match=r"field 'scorer': scorer is a pool now: write its engine "
        r"under `scorer.engine`",
    ) as info:
        load_config(OptimizeJobConfig, job)
    assert len(str(info.value).splitlines()) == 1
    job.write_text(
        "task: {name: t, data: d.jsonl, initial_prompt: p}\nscorer:\n  engine:\n    backend: hf\n"
    )
    assert load_config(OptimizeJobConfig, job).scorer.engine.backend == "hf"
