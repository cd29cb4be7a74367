"""Backends by name: each is one engine class with its own config class.

Adding a backend is one new file plus one entry in `BACKENDS` below
(tests/test_backend_contract.py proves it). The file holds a config class, subclassing
`EngineSettings` with `backend: Literal["name"]` and its own knobs (its defaults cover what
replicas, pool planning and jobs read: `loads_model`, `gpus_per_engine`, `process_env`,
`cpu_kv_cache_gib`, `prefills`, `preflight`), and an engine class meeting the `Engine`
protocol of engines/engine.py:
`config_class`, `config`, `prompt_format`, `tokenizer`, `template_frames`, `model_path`,
`prepare_score`, `prepare_generate`, `run`, `score`, `generate`, `count_tokens`,
`engine_died`, `close`. Subclassing `prepared_calls.PreparedEngine` gives all of them but the
model's own work: loading it (`tokenizer`, `model_path`), `token_scores` and
`generate_samples` (plus `close` and `engine_died` for an engine holding another process).

Configs name a backend with `backend: name` (default vllm); the union below validates each one
against its own class, so a vLLM-only knob on a transformers engine is an error, not silently
ignored. Engine classes import their heavy libraries (vLLM, torch) only when built, so
validating a config stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag

from pmpo_ray.config import EngineSettings, FrozenConfig, PromptFormat, ReplicaConfig
from pmpo_ray.engines.engine import Engine
from pmpo_ray.engines.hf_engine import HfEngine
from pmpo_ray.engines.openai_engine import OpenAiEngine
from pmpo_ray.engines.simulated_engine import SimulatedEngine
from pmpo_ray.engines.vllm_engine import VllmEngine

BACKENDS: dict[str, type[Engine]] = {
    "vllm": VllmEngine,
    "hf": HfEngine,
    "simulated": SimulatedEngine,
    "openai": OpenAiEngine,
}
DEFAULT_BACKEND = "vllm"


def _backend_tag(value: Any) -> str | None:
    """The union tag of a raw mapping or a built config; a missing backend means vLLM."""
    if isinstance(value, dict):
        name = value.get("backend", DEFAULT_BACKEND)
    else:
        name = getattr(value, "backend", None)
    return f"<{name}>" if name in BACKENDS else None


# Tags are "<name>" so config errors can leave them out of field paths (config.py).
EngineConfig = Annotated[
    Union[tuple(Annotated[cls.config_class, Tag(f"<{name}>")] for name, cls in BACKENDS.items())],
    Discriminator(
        _backend_tag,
        custom_error_type="unknown_backend",
        custom_error_message=f"backend must be one of {', '.join(BACKENDS)}",
    ),
]


def default_engine_config():
    return BACKENDS[DEFAULT_BACKEND].config_class()


def build_engine(config: EngineSettings, prompt_format: PromptFormat | None = None) -> Engine:
    """An engine of `config`'s backend, loaded in this process."""
    if config.backend not in BACKENDS:  # configs are validated; code can still build one
        raise ValueError(f"unknown backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[config.backend](config, prompt_format)


class PoolConfig(FrozenConfig):
    """One role's engines: which engine, and how many replicas of it Ray runs."""

    engine: EngineConfig = Field(
        default_factory=default_engine_config, description="Engine of each replica."
    )
    replicas: ReplicaConfig = Field(
        default_factory=ReplicaConfig,
        description="How many replicas and the resources of each (used on Ray).",
    )
