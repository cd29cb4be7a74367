"""The workload `pipelines/bench_scale.py` projects: one PMPO iteration of many tasks as jobs,
rows and engine seconds, the client's own batch planner, and a BBH row's length in tokens."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

from pipelines.bench_costs import Iteration, Job

DEFAULT_TOKENIZER = Path("/root/.cache/pmpo-ray/SmolLM2-135M-Instruct")
FALLBACK_TOKENS_PER_ROW = 250.0  # when the tokenizer is not on this machine


@dataclass(frozen=True)
class Workload:
    tasks: int
    hard_cases: int  # k
    rewrites: int  # n per hard case
    max_train: int  # examples each candidate is scored on
    masked_units: int  # prompts scored with one unit masked, per analysis
    rewrite_tokens: int  # generated per rewrite
    segmentation_tokens: int  # generated per segmentation
    tokens_per_row: float  # a scoring row's tokens (context + answer)
    tokens_per_second: float  # one replica's, read or written

    @classmethod
    def defaults(cls, tasks: int, max_train: int, tokens_per_row: float, tps: float):
        """k, n, masked units and generation budgets from OptimizerConfig's defaults (the
        budgets and max_units are upper bounds: most rewrites stop earlier, short prompts have
        fewer units)."""
        from pmpo_ray.pmpo.config import OptimizerConfig

        config = OptimizerConfig()
        return cls(
            tasks=tasks,
            hard_cases=config.hard_cases,
            rewrites=config.rewrites_per_case,
            max_train=max_train,
            masked_units=config.max_units,
            rewrite_tokens=config.max_rewrite_tokens,
            segmentation_tokens=config.max_segmentation_tokens,
            tokens_per_row=tokens_per_row,
            tokens_per_second=tps,
        )

    def iteration(self) -> Iteration:
        """An analyze round (segmentations, then the masked prompts scored) and a rewrite round
        (k requests of n samples per task, then k x n rewrites scored), each stage one job of
        every task (one shared pool: one cohort). Engine seconds: every scored row's tokens and
        every generated token at `tokens_per_second`; generation prompts are not counted."""
        t, k, n, m = self.tasks, self.hard_cases, self.rewrites, self.max_train
        tps = self.tokens_per_second
        row_s = self.tokens_per_row / tps
        masked, rewritten = t * self.masked_units * m, t * k * n * m
        generated = t * (self.segmentation_tokens + k * n * self.rewrite_tokens)
        jobs = (
            Job(t, self.segmentation_tokens / tps),
            Job(masked, row_s),
            Job(t * k, n * self.rewrite_tokens / tps),
            Job(rewritten, row_s),
        )
        scored = masked + rewritten
        return Iteration(jobs, scored, (scored * self.tokens_per_row + generated) / tps)


def planned_batches(n_rows: int, replicas: int, seconds_per_row: float = 0.0) -> int:
    """How many batches the client cuts an `n_rows` job into on `replicas` replicas with
    ReplicaConfig's defaults: its own planner, whichever this checkout has (`plan_batches`,
    work-sized, capped at max_batch_seconds of engine time; else `batch_rows_for`)."""
    return len(batch_plan(n_rows, replicas, seconds_per_row)[0])


def batch_plan(n_rows: int, replicas: int, seconds_per_row: float = 0.0) -> tuple[list[int], str]:
    """(batch sizes, which planner made them)."""
    from pmpo_ray.config import ReplicaConfig
    from pmpo_ray.engines import ray_data_client, row_chunks

    config = ReplicaConfig()
    fixed = getattr(config, "batch_rows", None)
    plan = getattr(ray_data_client, "plan_batches", None)
    plan = plan or getattr(row_chunks, "plan_batches", None)
    if plan is not None and fixed is None:
        accepted = inspect.signature(plan).parameters
        options = {}
        if "min_rows" in accepted:
            options["min_rows"] = getattr(config, "min_batch_rows", 1)
        if "max_rows" in accepted:
            most = getattr(config, "max_batch_seconds", None)
            options["max_rows"] = int(most / seconds_per_row) if most and seconds_per_row else None
        return list(plan(n_rows, replicas, **options)), "plan_batches"
    if fixed is not None and hasattr(row_chunks, "fixed_batches"):
        return list(row_chunks.fixed_batches(n_rows, fixed)), f"fixed_batches({fixed})"
    rows = ray_data_client.batch_rows_for(n_rows, replicas, fixed)
    sizes = [min(rows, n_rows - start) for start in range(0, n_rows, rows)]
    return sizes, f"batch_rows_for(most={fixed})"


def bbh_tokens_per_row(tokenizer_path: Path = DEFAULT_TOKENIZER) -> tuple[float, str]:
    """Mean tokens of a scoring row (chat-rendered prompt and input, plus the answer) over the
    built-in BBH samples, in the default model's tokenizer; (250, "assumed") without it."""
    if not tokenizer_path.is_dir():
        return FALLBACK_TOKENS_PER_ROW, f"assumed ({tokenizer_path} not found)"
    from transformers import AutoTokenizer

    from pipelines.scale_setup import INITIAL_PROMPT
    from pmpo_ray.config import PromptFormat
    from pmpo_ray.engines.scoring import encode_table
    from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    lengths = []
    for path in sorted((SAMPLES_DIR / "bbh").glob("*.json")):
        table = bbh_rows(load_examples(path), path.stem, PromptFormat().role, INITIAL_PROMPT)
        encoded = encode_table(table, tokenizer, max_len=1 << 20, truncate_left=False)
        lengths += [len(request.token_ids) for request in encoded]
    how = f"measured: {len(lengths)} built-in BBH rows, {tokenizer_path.name}"
    return sum(lengths) / len(lengths), how


def bbh_rows(examples, task_id: str, role: str, prompt: str, count: int | None = None):
    """Scoring rows of `prompt` over `examples` (cycled to `count` rows, ids 0..count-1)."""
    from pmpo_ray.requests import score_requests

    count = len(examples) if count is None else count
    repeats = math.ceil(count / len(examples))
    prompts = [(f"c{index}", prompt) for index in range(repeats)]
    table = score_requests(prompts, examples, task_id=task_id, kind="candidate", role=role)
    return table.slice(0, count)
