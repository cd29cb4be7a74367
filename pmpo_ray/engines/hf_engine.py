"""transformers backend: the reference the vLLM numbers are checked against.

Scoring is one padded forward pass per batch and a log-softmax over the positions that
predict continuation tokens. With prefix sharing, rows that open with the same tokens (a
candidate's chat template and prompt) are grouped: the shared prefix is run once, and the rows'
tails are scored in batches against copies of its KV cache. Generation uses `model.generate`
with a per-request seed.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.generation import PreparedGeneration, Sample, cut_at_stop
from pmpo_ray.engines.models import resolve_model_path
from pmpo_ray.engines.prefix_sharing import prefix_groups
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.scoring import TokenScores, long_first_batches
from pmpo_ray.engines.tokenization import EncodedRequest

# Shorter shared prefixes are not worth a separate pass and a cache copy.
MIN_SHARED_PREFIX = 16


class HfConfig(EngineSettings):
    backend: Literal["hf"] = Field("hf", description="transformers, the reference backend.")


class HfEngine(PreparedEngine):
    """One transformers model in this process (engines/engine.py: the contract)."""

    config_class = HfConfig

    def __init__(self, config: HfConfig, prompt_format: PromptFormat | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(config, prompt_format)
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

    def generate_samples(self, prepared: PreparedGeneration) -> list[list[Sample]]:
        return [
            self._sample(ids, row)
            for ids, row in zip(prepared.token_ids, prepared.table.to_pylist())
        ]

    def token_scores(self, batch: Sequence[EncodedRequest], share: bool) -> list[TokenScores]:
        if not share:
            return self._score_rows(batch, prefix_len=0, cache=None)
        groups = prefix_groups(batch, MIN_SHARED_PREFIX)
        # Rows that share nothing worth a cache are scored together, as without sharing.
        alone = [members[0] for shared, members in groups if not shared]
        groups = [group for group in groups if group[0]] + ([(0, alone)] if alone else [])
        results: list[TokenScores | None] = [None] * len(batch)
        for prefix_len, members in groups:
            by_row = {batch[i].row: i for i in members}
            cache = self._prefix_cache(batch[members[0]].token_ids[:prefix_len])
            # Sub-batches bound the padded tails, as the whole batch is bounded without sharing.
            budget = self.config.max_batch_tokens
            for part in long_first_batches([batch[i] for i in members], budget, prefix_len):
                for request, scores in zip(part, self._score_rows(part, prefix_len, cache)):
                    results[by_row[request.row]] = scores
            if prefix_len:  # the prefix was computed once, for the group's first row
                first = members[0]
                results[first] = results[first]._replace(
                    computed=results[first].computed + prefix_len
                )
        return results  # type: ignore[return-value]

    def _prefix_cache(self, prefix: Sequence[int]):
        """The KV cache of `prefix` (None for an empty one)."""
        import torch

        if not prefix:
            return None
        with torch.inference_mode():
            ids = torch.tensor([list(prefix)], device=self.device)
            # Only the cache is wanted: skip the vocabulary projection of all but one position.
            return self.model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values

    def _score_rows(
        self, batch: Sequence[EncodedRequest], prefix_len: int, cache
    ) -> list[TokenScores]:
        """One padded forward pass over the rows' tokens after `prefix_len`, reading the
        prefix from `cache` (a copy of it: a forward pass appends to the cache it is given)."""
        import copy

        import torch

        tails = [r.token_ids[prefix_len:] for r in batch]
        width = max(len(tail) for tail in tails)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for i, tail in enumerate(tails):  # right padding keeps every real position exact
            ids[i, : len(tail)] = torch.tensor(tail)
            mask[i, prefix_len : prefix_len + len(tail)] = 1
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if cache is not None:
            rows_cache = copy.deepcopy(cache)
            rows_cache.batch_repeat_interleave(len(batch))
            positions = torch.arange(prefix_len, prefix_len + width).expand(len(batch), -1)
            inputs.update(past_key_values=rows_cache, position_ids=positions.to(self.device))
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float()
        results = []
        for i, request in enumerate(batch):
            # Position p predicts token p+1: continuation tokens n_context.. are read at p-1,
            # which is row p - 1 - prefix_len of this pass (the prefix ends before n_context-1).
            start = request.n_context - 1 - prefix_len
            positions = torch.arange(start, start + request.n_continuation)
            targets = torch.tensor(request.token_ids[request.n_context :])
            rows = torch.log_softmax(logits[i, positions.to(self.device)], dim=-1).cpu()
            logprobs = rows.gather(1, targets[:, None]).squeeze(1)
            greedy = rows.argmax(dim=-1) == targets
            results.append(
                TokenScores(
                    logprobs.double().numpy(),
                    greedy.numpy().astype(bool),
                    len(request.token_ids) - prefix_len,
                )
            )
        return results

    def _sample(self, ids: list[int], row: dict) -> list[Sample]:
        import torch

        torch.manual_seed(row["seed"])
        greedy = row["temperature"] == 0
        input_ids = torch.tensor([ids], device=self.device)
        room = self.config.model.max_model_len - len(ids)
        stop_strings = list(row.get("stop") or [])
        # transformers ends a sequence at a stop string but keeps it; it is cut off below.
        stopping = {"stop_strings": stop_strings, "tokenizer": self.tokenizer}
        if not stop_strings:
            stopping = {}
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
                **stopping,
            )
        samples = []
        for sequence in output[:, len(ids) :].tolist():
            stop = _stop_index(sequence, self.tokenizer.eos_token_id)
            text = self.tokenizer.decode(sequence[:stop], skip_special_tokens=True)
            finish = "stop" if stop < len(sequence) else "length"
            if (stopped := cut_at_stop(text, stop_strings)) is not None:
                text, finish = stopped, "stop"
            samples.append((text, min(stop + 1, len(sequence)), finish))
        return samples


def _stop_index(sequence: list[int], eos_id: int | None) -> int:
    return sequence.index(eos_id) if eos_id is not None and eos_id in sequence else len(sequence)
