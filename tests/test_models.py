from pathlib import Path

import pytest

from pmpo_ray.config import ModelConfig
from pmpo_ray.engines.models import (
    COMPLETE_MARKER,
    ModelNotFoundError,
    default_cache_dir,
    resolve_model_path,
)
from pmpo_ray.engines.registry import build_engine
from pmpo_ray.engines.vllm_engine import VllmConfig


def test_unknown_hub_id_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        ModelNotFoundError, match="not in the local Hugging Face cache.*local folder"
    ):
        resolve_model_path(ModelConfig(name="someone/never-cached-model"))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model_path(ModelConfig(name=str(tmp_path)))


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PMPO_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path


def test_default_model_is_a_complete_hf_folder(model_path):
    folder = Path(model_path)
    assert (folder / COMPLETE_MARKER).exists()
    assert (folder / "config.json").exists()
    assert list(folder.glob("*.safetensors"))
    assert "quantization_config" not in (folder / "config.json").read_text()


def test_unknown_backend_in_code_is_an_error():
    config = VllmConfig.model_construct(backend="tgi")
    with pytest.raises(ValueError, match="unknown backend 'tgi'; choose one of vllm, hf"):
        build_engine(config)
