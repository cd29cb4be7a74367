"""Benchmark: the same scoring requests through an engine in process and through a replica
pool on Ray.

    python -m pipelines.bench_scoring [--replicas 2] [--examples-per-task 45]

Prints tokens/s of each path and their ratio, measured in this one run (the machine is shared
and noisy; compare ratios, not absolute numbers across runs). Engines are warmed up before
timing, so start-up cost is reported separately.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.chat import render_rows
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.registry import BACKENDS, PoolConfig
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

SAMPLES = SAMPLES_DIR / "bbh"
PROMPTS = [
    ("final-only", "Read the question carefully and answer with the final answer only."),
    ("stepwise", "Let's think step by step."),
]
MIN_TOKENS = 20_000


def bench_requests(tokenizer, per_task: int):
    examples = []
    for path in sorted(SAMPLES.glob("*.json")):
        rows = load_examples(path)[:per_task]
        examples += [replace(e, example_id=f"{path.stem}-{e.example_id}") for e in rows]
    table = score_requests(PROMPTS, examples, task_id="bench", kind="adhoc", role="system")
    contexts = render_rows(table, tokenizer, "bench")
    texts = [c + t for c, t in zip(contexts, table.column("continuation").to_pylist())]
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return table, tokens


def timed(label: str, scorer, requests, tokens: int) -> float:
    scorer.score(requests.slice(0, 4))  # warm-up: the first call pays one-off costs
    started = time.perf_counter()
    result = scorer.score(requests)
    seconds = time.perf_counter() - started
    assert result.num_rows == requests.num_rows
    print(f"{label:<28} {tokens} tokens in {seconds:7.1f} s = {tokens / seconds:8.1f} tok/s")
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--examples-per-task", type=int, default=45)
    parser.add_argument("--backend", choices=list(BACKENDS), default="vllm")
    args = parser.parse_args()

    engine = BACKENDS[args.backend].config_class()
    started = time.perf_counter()
    with open_engines(PoolConfig(engine=engine)) as client:
        print(f"engine in process start: {time.perf_counter() - started:.1f} s")
        scorer = client.engines["scorer"]
        requests, tokens = bench_requests(scorer.tokenizer, args.examples_per_task)
        if tokens < MIN_TOKENS:
            raise SystemExit(
                f"only {tokens} tokens; raise --examples-per-task to reach {MIN_TOKENS}"
            )
        bare = timed("engine in process", client, requests, tokens)

    replicas = ReplicaConfig(num_replicas=args.replicas, num_cpus=args.cpus_per_replica)
    started = time.perf_counter()
    with open_engines(PoolConfig(engine=engine, replicas=replicas), on_ray=True) as client:
        print(f"pool of {args.replicas} start: {time.perf_counter() - started:.1f} s")
        pooled = timed(f"pool of {args.replicas} replicas", client, requests, tokens)
        for index, stats in enumerate(client.pools["scorer"].stats()):
            print(
                f"  replica {index}: {stats['calls']} calls, {stats['rows']} rows, "
                f"busy {stats['busy_seconds']:.1f} s"
            )
    print(f"pool / in-process throughput ratio: {pooled / bare:.2f}")


if __name__ == "__main__":
    main()
