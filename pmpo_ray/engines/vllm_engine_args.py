"""Check a vLLM config's `engine_kwargs` against vLLM's own `EngineArgs` before replicas start.

`LLM(...)` passes every keyword it does not name itself into `EngineArgs`, so that dataclass's
fields are the keys vLLM accepts. A typo would otherwise surface minutes later inside a
replica (or not at all: a knob vLLM ignores); a key VllmEngine already sets from our own
settings would fail there as a duplicate keyword, or, worse, make the pools' memory plan and
the run fingerprint describe another engine than the one running.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

# vLLM's name -> the pmpo-ray setting VllmEngine sets it from (vllm_engine.py, its LLM(...)).
OUR_SETTINGS = {
    "model": "engine.model.name",
    # Our tokenization and chat templates use the model folder's tokenizer.
    "tokenizer": "engine.model.name",
    "dtype": "engine.dtype",
    "seed": "engine.seed",
    "max_model_len": "engine.model.max_model_len",
    "max_num_batched_tokens": "engine.max_batch_tokens",
    "enable_prefix_caching": "engine.prefix_sharing",
    "block_size": "engine.block_size",
    "gpu_memory_utilization": "engine.gpu_memory_utilization",
    "tensor_parallel_size": "engine.tensor_parallel_size",
    "enforce_eager": "engine.enforce_eager",
}
# Keys that would make a replica span more GPUs than the pool plan reserves for it
# (gpus_per_engine: tensor_parallel_size); more engines are more replicas.
SPANS_MORE_GPUS = ("pipeline_parallel_size", "data_parallel_size")


def check_engine_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Raise ValueError in one line on the first key vLLM does not know or that one of our
    own settings already sets; imports vLLM (seconds), so it runs in preflight, not while a
    config validates."""
    if not kwargs:  # nothing to check: skip vLLM's import
        return
    known = engine_arg_names()
    for key in kwargs:
        if key in OUR_SETTINGS:
            raise ValueError(
                f"engine_kwargs: {key!r} is pmpo-ray's own setting; set {OUR_SETTINGS[key]} instead"
            )
        if key in SPANS_MORE_GPUS:
            raise ValueError(
                f"engine_kwargs: {key!r} would make each replica span more GPUs than the pool "
                f"plan reserves; use replicas.num_replicas or engine.tensor_parallel_size"
            )
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise ValueError(f"engine_kwargs: unknown vLLM engine argument {key!r}{hint}")


def engine_arg_names() -> set[str]:
    """The public fields of the installed vLLM's EngineArgs (private ones are vLLM's own)."""
    from vllm.engine.arg_utils import EngineArgs

    return {f.name for f in dataclasses.fields(EngineArgs) if not f.name.startswith("_")}
