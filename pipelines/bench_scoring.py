"""Benchmark: prefix-shared vs naive scoring on one engine, against the machine's matmul rate.

    python -m pipelines.bench_scoring [--backend vllm] [--examples 48] [--skip-round]
    python -m pipelines.bench_scoring --pool 2     # in process vs a pool of 2 Ray replicas

Measured in one run on the same warm engine (the machine is shared and noisy: compare the
ratios, not absolute numbers across runs):
  (a) one candidate prompt about 4x as long as an example, over N examples;
  (b) a 5-option multiple-choice task (every option of an example shares its whole context);
  (c) the scoring of one real optimizer round of the demo suite (its first rewrite round).
Each prints tokens/s naive and shared, counting the tokens each path actually computed, and
the effective rate (the naive token count over the shared time). Then the machine's matmul
FLOP/s in the engine's dtype, and the shared path's computed tokens x 2 x parameters as a
share of it. The last line: `prefix sharing speed-up: X.XX× (prompt≈4×example), Y.YY×
(5-option MC)`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import pyarrow as pa

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.registry import BACKENDS, PoolConfig
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

SAMPLES = SAMPLES_DIR / "bbh"
INSTRUCTION = (
    "You are a careful assistant for reasoning puzzles. Read the whole question before you "
    "answer, keep track of every fact it states, check each step against those facts, and "
    "give the answer in exactly the format the question asks for, with nothing else. "
)


def long_prompt_case(engine, n_examples: int) -> pa.Table:
    """(a): sports_understanding sentences (~20 tokens) under a prompt ~4x as long."""
    examples = load_examples(SAMPLES / "sports_understanding.json")[:n_examples]
    mean_input = sum(len(engine.tokenizer(e.input)["input_ids"]) for e in examples) / len(examples)
    prompt = INSTRUCTION
    while len(engine.tokenizer(prompt)["input_ids"]) < 4 * mean_input:
        prompt += INSTRUCTION
    return score_requests([("long", prompt)], examples, task_id="a", kind="adhoc", role="system")


def multiple_choice_case(n_examples: int) -> pa.Table:
    """(b): logical deduction questions with their options padded to five."""
    rows = load_examples(SAMPLES / "logical_deduction_three_objects.json")[:n_examples]
    letters = ("(A)", "(B)", "(C)", "(D)", "(E)")
    examples = []
    for example in rows:
        wrong = [o for o in letters if o != example.target][:4]
        examples.append(replace(example, rejected=tuple(wrong)))
    prompts = [("mc", "Answer with the letter of the correct option.")]
    return score_requests(
        prompts, examples, task_id="b", kind="adhoc", role="system", with_rejected=True
    )


def demo_round_case(client) -> pa.Table:
    """(c): the demo suite's first rewrite round, all tasks' scoring requests in one table."""
    from pmpo_ray.config import load_config
    from pmpo_ray.jobs import SuiteConfig
    from pmpo_ray.pmpo.rounds import combine_requests
    from pmpo_ray.pmpo.task_run import TaskRun
    from pmpo_ray.tasks.task import load_task

    suite = load_config(SuiteConfig, "pipelines/suites/demo.yaml")
    runs = [
        TaskRun(load_task(e.task), suite.optimizer_for(e), client.count_tokens, suite.prompt_format)
        for e in suite.tasks
    ]
    for run in runs:  # round 1 (analysis), then round 2's rewrites, one task at a time
        run.take_generations(client.generate(run.plan_generation()))
        run.take_scores(client.score(run.plan_scoring()))
        run.take_generations(client.generate(run.plan_generation()))
    table, _ = combine_requests([run.plan_scoring() for run in runs])
    return table


def timed(engine, requests: pa.Table, share: bool) -> tuple[float, int, pa.Table]:
    engine.score(requests.slice(0, 2), share_prefixes=share)  # warm-up: one-off costs
    if hasattr(engine, "llm"):  # every path starts from an empty vLLM prefix cache
        engine.llm.reset_prefix_cache()
    started = time.perf_counter()
    result = engine.score(requests, share_prefixes=share)
    seconds = time.perf_counter() - started
    assert result.num_rows == requests.num_rows
    return seconds, sum(result.column("n_computed_tokens").to_pylist()), result


def compare(label: str, engine, requests: pa.Table) -> dict:
    naive_s, naive_tokens, naive = timed(engine, requests, share=False)
    shared_s, shared_tokens, shared = timed(engine, requests, share=True)
    drift = max(
        abs(a - b) / n
        for a, b, n in zip(
            naive.column("logprob_sum").to_pylist(),
            shared.column("logprob_sum").to_pylist(),
            naive.column("n_tokens").to_pylist(),
        )
    )
    print(
        f"{label:<30} {requests.num_rows:>5} rows | naive {naive_tokens:>7} tok {naive_s:7.1f} s "
        f"{naive_tokens / naive_s:8.1f} tok/s | shared {shared_tokens:>7} tok {shared_s:7.1f} s "
        f"{shared_tokens / shared_s:8.1f} tok/s, effective {naive_tokens / shared_s:8.1f} tok/s | "
        f"speed-up {naive_s / shared_s:5.2f}x | max drift {drift:.1e} nats/token"
    )
    return {"speedup": naive_s / shared_s, "tokens": shared_tokens, "seconds": shared_s}


def matmul_flops(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """The best of a few square matmuls in the engine's dtype, in FLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def prefix_benchmark(args) -> None:
    engine_config = BACKENDS[args.backend].config_class(prefix_sharing=True)
    with open_engines(PoolConfig(engine=engine_config)) as client:
        engine = client.engines["scorer"]
        results = {
            "a": compare("(a) prompt≈4×example", engine, long_prompt_case(engine, args.examples)),
            "b": compare("(b) 5-option MC", engine, multiple_choice_case(args.examples)),
        }
        if not args.skip_round:
            results["c"] = compare("(c) demo rewrite round", engine, demo_round_case(client))
        dtype = "float32" if args.backend == "hf" else str(engine.llm.llm_engine.model_config.dtype)
        dtype = dtype.removeprefix("torch.")
        parameters = engine_parameters(engine)
    peak = matmul_flops(dtype)
    print(f"matmul peak ({dtype}, this machine, torch): {peak / 1e9:.1f} GFLOP/s")
    for key, result in results.items():
        achieved = result["tokens"] / result["seconds"] * 2 * parameters
        print(
            f"({key}) shared path: {achieved / 1e9:.1f} GFLOP/s computed "
            f"= {achieved / peak:.2f} of the matmul peak"
        )
    print(
        f"prefix sharing speed-up: {results['a']['speedup']:.2f}× (prompt≈4×example), "
        f"{results['b']['speedup']:.2f}× (5-option MC)"
    )


def engine_parameters(engine) -> int:
    import json
    from pathlib import Path

    config = json.loads((Path(engine.model_path) / "config.json").read_text())
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = hidden // heads
    attention = hidden * hidden * 2 + 2 * hidden * kv_heads * head_dim
    per_layer = attention + 3 * hidden * inter
    # The embedding is a lookup; the (tied) output projection is a matmul per token.
    return layers * per_layer + vocab * hidden


def pool_benchmark(args) -> None:
    """The same requests in process and through a pool of Ray replicas."""
    engine = BACKENDS[args.backend].config_class()
    requests = long_prompt_case_for_pool(args.examples)
    with open_engines(PoolConfig(engine=engine)) as client:
        started = time.perf_counter()
        client.score(requests)
        alone = time.perf_counter() - started
    replicas = ReplicaConfig(num_replicas=args.pool, num_cpus=args.cpus_per_replica)
    with open_engines(PoolConfig(engine=engine, replicas=replicas), on_ray=True) as client:
        client.score(requests.slice(0, 4))
        started = time.perf_counter()
        client.score(requests)
        pooled = time.perf_counter() - started
    print(f"in process {alone:.1f} s, pool of {args.pool} {pooled:.1f} s: {alone / pooled:.2f}x")


def long_prompt_case_for_pool(n_examples: int) -> pa.Table:
    examples: list[Example] = []
    for path in sorted(SAMPLES.glob("*.json")):
        rows = load_examples(path)[:n_examples]
        examples += [replace(e, example_id=f"{path.stem}-{e.example_id}") for e in rows]
    prompts = [("final", "Answer with the final answer only."), ("step", INSTRUCTION)]
    return score_requests(prompts, examples, task_id="pool", kind="adhoc", role="system")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=list(BACKENDS), default="vllm")
    parser.add_argument("--examples", type=int, default=48, help="examples per case")
    parser.add_argument("--skip-round", action="store_true", help="skip (c), the demo round")
    parser.add_argument("--pool", type=int, help="instead: in process vs N Ray replicas")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    args = parser.parse_args()
    if args.pool:
        pool_benchmark(args)
    else:
        prefix_benchmark(args)


if __name__ == "__main__":
    main()
