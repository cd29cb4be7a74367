"""transformers backend: the reference the vLLM numbers are checked against.

Scoring is one padded forward pass per batch and a log-softmax over the positions that
predict continuation tokens. Generation uses `model.generate` with a per-request seed.
"""

from __future__ import annotations

from typing import Literal, Sequence

import pyarrow as pa
from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.generation import Sample, generation_rows, prompt_token_ids
from pmpo_ray.engines.models import resolve_model_path
from pmpo_ray.engines.scoring import TokenScores, score_table
from pmpo_ray.engines.tokenization import EncodedRequest, count_tokens


class HfConfig(EngineSettings):
    backend: Literal["hf"] = Field("hf", description="transformers, the reference backend.")


class HfEngine:
    """One transformers model: `score`, `generate` and `count_tokens` over Arrow tables."""

    config_class = HfConfig

    def __init__(self, config: HfConfig, prompt_format: PromptFormat | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.prompt_format = prompt_format or PromptFormat()
        self.model_path = resolve_model_path(config.model)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if config.dtype == "auto":  # fp32 is the reference on CPU; GPUs want bf16
            dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        else:
            dtype = getattr(torch, config.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        self.model.to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id or 0

    def close(self) -> None:
        """Nothing runs outside this process; here for symmetry with VllmEngine."""

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
        import torch

        width = max(len(r.token_ids) for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, request in enumerate(batch):  # right padding keeps positions 0..n-1 exact
            ids[i, : len(request.token_ids)] = torch.tensor(request.token_ids)
            mask[i, : len(request.token_ids)] = 1
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits.float()
        results = []
        for i, request in enumerate(batch):
            # Position p predicts token p+1: continuation tokens n_context.. are read at p-1.
            positions = torch.arange(request.n_context - 1, len(request.token_ids) - 1)
            targets = torch.tensor(request.token_ids[request.n_context :])
            rows = torch.log_softmax(logits[i, positions.to(self.device)], dim=-1).cpu()
            logprobs = rows.gather(1, targets[:, None]).squeeze(1)
            greedy = rows.argmax(dim=-1) == targets
            results.append((logprobs.double().numpy(), greedy.numpy().astype(bool)))
        return results

    def generate(self, requests: pa.Table) -> pa.Table:
        token_ids = prompt_token_ids(requests, self.tokenizer, self.config.model.max_model_len)
        samples = [self._sample(ids, row) for ids, row in zip(token_ids, requests.to_pylist())]
        return generation_rows(requests, samples, token_ids)

    def _sample(self, ids: list[int], row: dict) -> list[Sample]:
        import torch

        torch.manual_seed(row["seed"])
        greedy = row["temperature"] == 0
        input_ids = torch.tensor([ids], device=self.device)
        room = self.config.model.max_model_len - len(ids)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=not greedy,
                temperature=None if greedy else row["temperature"],
                top_p=None if greedy else row["top_p"],
                top_k=None,
                max_new_tokens=min(row["max_tokens"], room),
                num_return_sequences=row["n"],
                pad_token_id=self.pad_id,
            )
        samples = []
        for sequence in output[:, len(ids) :].tolist():
            stop = _stop_index(sequence, self.tokenizer.eos_token_id)
            text = self.tokenizer.decode(sequence[:stop], skip_special_tokens=True)
            finish = "stop" if stop < len(sequence) else "length"
            samples.append((text, min(stop + 1, len(sequence)), finish))
        return samples


def _stop_index(sequence: list[int], eos_id: int | None) -> int:
    return sequence.index(eos_id) if eos_id is not None and eos_id in sequence else len(sequence)
