"""Shared fixtures: the default model's tokenizer, real engines (session-scoped, started once),
and a local Ray on loopback that the test session stops itself."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import pytest

from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

SAMPLES = SAMPLES_DIR / "bbh"

# The evaluation cache (pmpo_ray/evaluation/cache.py) never reaches the user's home from tests:
# set before any test module copies the environment for the processes it starts.
os.environ["PMPO_RAY_CACHE"] = tempfile.mkdtemp(prefix="pmpo-test-cache-")


@pytest.fixture(autouse=True)
def evaluation_cache(tmp_path, monkeypatch):
    """Each test starts with an empty evaluation cache of its own."""
    monkeypatch.setenv("PMPO_RAY_CACHE", str(tmp_path / "pmpo-cache"))


def bbh_examples(task: str, count: int) -> list[Example]:
    """The first `count` examples of a built-in BBH task, ids prefixed by the task's name."""
    examples = load_examples(SAMPLES / f"{task}.json")[:count]
    return [replace(e, example_id=f"{task}-{e.example_id}") for e in examples]


@pytest.fixture(scope="session")
def model_path() -> str:
    from pmpo_ray.config import ModelConfig
    from pmpo_ray.engines.models import resolve_model_path

    return resolve_model_path(ModelConfig())


@pytest.fixture(scope="session")
def tokenizer(model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


@pytest.fixture(scope="session")
def hf_engine():
    from pmpo_ray.engines.hf_engine import HfConfig
    from pmpo_ray.engines.registry import build_engine

    return build_engine(HfConfig())


@pytest.fixture(scope="session")
def vllm_engine():
    from pmpo_ray.engines.registry import build_engine
    from pmpo_ray.engines.vllm_engine import VllmConfig

    engine = build_engine(VllmConfig())
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def local_ray():
    """A real local Ray (2 logical CPUs, loopback only), shut down by this process."""
    import ray

    ray.init(
        address="local",  # never join a head another test (or user) left on this machine
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        namespace="pmpo-tests",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def loopback_ray_head(tmp_path_factory):
    """One `ray start --head` on loopback for the session's cluster tests, stopped by its
    process id (tests/loopback_head.py)."""
    from tests.loopback_head import loopback_head

    with loopback_head(tmp_path_factory.mktemp("ray-head")) as head:
        yield head
