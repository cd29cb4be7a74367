"""What scoring through an OpenAI-compatible server costs against scoring in process, on the
same rows, measured in one run.

    python -m pipelines.bench_server_scoring [--rows 40] [--repeats 3]

Starts a vLLM server for the default model on loopback (pipelines/serve_local.py) and an
in-process vLLM engine with the same settings (two engines: run nothing else beside it), then
scores BBH navigate rows (two prompts over the examples) with each, warm, `repeats` times:
in process with prefix sharing (the default), in process without it, and through the server
at 1 and 8 requests in flight. Prints rows/s, the ratio to in-process scoring, and the largest
per-row difference in logprob sums between the server and the engine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipelines.serve_local import SERVED_NAME, local_server
from pmpo_ray.engines.openai_engine import OpenAiConfig, OpenAiEngine
from pmpo_ray.engines.vllm_engine import VllmConfig, VllmEngine
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples

PROMPTS = [("p0", "Let's think step by step."), ("p1", "Answer with the option only.")]


def bench_rows(rows: int):
    examples = load_examples(SAMPLES_DIR / "bbh" / "navigate.json")[: rows // len(PROMPTS)]
    return score_requests(PROMPTS, examples, task_id="navigate", kind="candidate", role="system")


def rows_per_second(score, table, repeats: int) -> tuple[float, object]:
    """Best of `repeats` timed calls after one warm-up call (this machine is shared)."""
    result = score(table)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        score(table)
        best = min(best, time.perf_counter() - started)
    return table.num_rows / best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    table = bench_rows(args.rows)
    figures = {}
    with local_server() as server:
        local = VllmEngine(VllmConfig())
        try:
            figures["in process"], reference = rows_per_second(local.score, table, args.repeats)
            figures["in process, no prefix sharing"], _ = rows_per_second(
                lambda t: local.score(t, share_prefixes=False), table, args.repeats
            )
        finally:
            local.close()
        for in_flight in (1, 8):
            config = OpenAiConfig(
                base_url=server.base_url,
                model=SERVED_NAME,
                tokenizer="default",
                max_in_flight=in_flight,
            )
            engine = OpenAiEngine(config)
            try:
                figures[f"server, {in_flight} in flight"], served = rows_per_second(
                    engine.score, table, args.repeats
                )
            finally:
                engine.close()
    gap = np.max(
        np.abs(
            np.array(served.column("logprob_sum").to_pylist())
            - np.array(reference.column("logprob_sum").to_pylist())
        )
    )
    print(f"{table.num_rows} rows, best of {args.repeats}:")
    for name, speed in figures.items():
        print(f"  {name:32s} {speed:8.1f} rows/s  {speed / figures['in process']:5.2f}x")
    print(f"largest |logprob sum| difference, server vs in process: {gap:.2e} nats")


if __name__ == "__main__":
    main()
