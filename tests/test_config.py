import pytest

from pmpo_ray import config as config_module
from pmpo_ray.config import EngineConfig, FrozenConfig, ScoringConfig, load_config


def all_config_classes():
    return [
        value
        for value in vars(config_module).values()
        if isinstance(value, type) and issubclass(value, FrozenConfig) and value is not FrozenConfig
    ]


def test_every_field_has_a_description():
    for cls in all_config_classes():
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_configs_are_frozen():
    config = EngineConfig()
    with pytest.raises(Exception):
        config.seed = 3


def test_unknown_field_is_named_with_its_path(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text("engine:\n  model:\n    nmae: foo\n")
    with pytest.raises(ValueError, match=r"scoring.yaml: field 'engine.model.nmae': Extra inputs"):
        load_config(ScoringConfig, path)


def test_unknown_backend_is_named(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text("engine:\n  backend: tgi\n")
    with pytest.raises(ValueError, match=r"field 'engine.backend'"):
        load_config(ScoringConfig, path)


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "scoring.yaml"
    path.write_text("engine:\n  backend: hf\n  seed: 5\n")
    config = load_config(
        ScoringConfig, path, **{"engine.backend": "vllm", "engine.model.name": "/m"}
    )
    assert (config.engine.backend, config.engine.seed, config.engine.model.name) == (
        "vllm",
        5,
        "/m",
    )


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_config(ScoringConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping at the top level"):
        load_config(ScoringConfig, bad)
