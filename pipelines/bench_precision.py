"""Does bfloat16 pick the same prompts as float32? The evidence for the CPU dtype default.

    python -m pipelines.bench_precision [--run out/demo] [--backend vllm]

What matters to the optimizer is the ranking of candidates, not the loss itself. For every task
of a finished run (its candidates from history.parquet, each scored on the task's training
split), or without --run for 12 built-in prompts on 4 BBH tasks, this scores every candidate
with a float32 engine and then a bfloat16 one (one engine at a time), and prints per task: the
Spearman correlation of the two rankings, whether both pick the same best candidate, the mean
drift in nats/token, and the time each took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.registry import BACKENDS, PoolConfig
from pmpo_ray.pmpo.loss import NEEDS_REJECTED, example_losses, mean_loss, resolve_objective
from pmpo_ray.requests import score_requests

BUILTIN_TASKS = ("navigate", "sports_understanding", "object_counting", "hyperbaton")
BUILTIN_PROMPTS = [
    "",
    "Let's think step by step.",
    "Answer with the final answer only.",
    "Read the question carefully and answer it exactly.",
    "You are an expert puzzle solver. Give only the answer.",
    "Answer yes or no.",
    "Think about each fact in the question, then answer in the format it asks for.",
    "Be brief.",
    "Respond with one word.",
    "Explain your reasoning in detail before answering.",
    "You are a helpful assistant.",
    "Give the answer, then stop.",
]


def tasks_and_candidates(run: Path | None):
    """[(task, objective, reduction, beta, [(candidate id, text)])]."""
    from pmpo_ray.tasks.config import TaskConfig
    from pmpo_ray.tasks.task import load_task

    if run is None:
        out = []
        for name in BUILTIN_TASKS:
            task = load_task(
                TaskConfig(name=name, data=f"builtin:bbh/{name}.json", initial_prompt="x")
            )
            prompts = [(f"p{i}", text) for i, text in enumerate(BUILTIN_PROMPTS)]
            out.append((task, "ce", "mean", 1.0, prompts))
        return out
    import pyarrow.parquet as pq

    from pmpo_ray.run_folder.layout import HISTORY
    from pmpo_ray.run_folder.read import read_run_folder

    out = []
    for folder in read_run_folder(run).tasks:
        task = load_task(folder.config.task)
        optimizer = folder.config.optimizer
        rows = pq.read_table(folder.path / HISTORY).to_pylist()
        texts = {row["candidate_id"]: row["text"] for row in rows}
        objective = resolve_objective(optimizer.objective, task.format)
        out.append((task, objective, optimizer.reduction, optimizer.beta, sorted(texts.items())))
    return out


def losses_with(dtype: str, backend: str, work) -> tuple[list[dict[str, float]], float]:
    config = BACKENDS[backend].config_class(dtype=dtype)
    per_task = []
    with open_engines(PoolConfig(engine=config)) as client:
        started = time.perf_counter()
        for task, objective, reduction, beta, prompts in work:
            table = score_requests(
                prompts,
                task.train,
                task_id=task.task_id,
                kind="candidate",
                role="system",
                with_rejected=objective in NEEDS_REJECTED,
            )
            scored = client.score(table)
            losses = example_losses(scored, objective=objective, reduction=reduction, beta=beta)
            per_task.append({cid: mean_loss(values) for cid, values in losses.items()})
        return per_task, time.perf_counter() - started


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        for rank, index in enumerate(order):
            result[index] = float(rank)
        return result

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    mean = (n - 1) / 2
    cov = sum((x - mean) * (y - mean) for x, y in zip(ra, rb))
    var = sum((x - mean) ** 2 for x in ra)
    return cov / var if var else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder whose candidates to use")
    parser.add_argument("--backend", choices=list(BACKENDS), default="vllm")
    args = parser.parse_args()
    work = tasks_and_candidates(args.run)
    full, full_s = losses_with("float32", args.backend, work)
    half, half_s = losses_with("bfloat16", args.backend, work)
    print(f"{'task':<32} {'cands':>5} {'spearman':>8} {'same best':>9} {'drift':>7}")
    agree = []
    for (task, *_), a, b in zip(work, full, half):
        ids = sorted(a)
        rho = spearman([a[i] for i in ids], [b[i] for i in ids])
        same = min(ids, key=a.__getitem__) == min(ids, key=b.__getitem__)
        drift = sum(abs(a[i] - b[i]) for i in ids) / len(ids)
        agree.append(same)
        print(f"{task.task_id:<32} {len(ids):>5} {rho:>8.3f} {str(same):>9} {drift:>7.3f}")
    print(f"float32 {full_s:.1f} s, bfloat16 {half_s:.1f} s: bfloat16 {full_s / half_s:.2f}x")
    print(f"same best candidate on {sum(agree)} of {len(agree)} tasks")


if __name__ == "__main__":
    main()
