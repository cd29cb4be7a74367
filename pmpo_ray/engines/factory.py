"""Build an engine by backend name; each backend's heavy imports happen only here."""

from __future__ import annotations

from pmpo_ray.config import EngineConfig, PromptFormat

BACKENDS = ("vllm", "hf")


def build_engine(config: EngineConfig, prompt_format: PromptFormat | None = None):
    if config.backend == "vllm":
        from pmpo_ray.engines.vllm_engine import VllmEngine

        return VllmEngine(config, prompt_format)
    if config.backend == "hf":
        from pmpo_ray.engines.hf_engine import HfEngine

        return HfEngine(config, prompt_format)
    raise ValueError(f"unknown backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
