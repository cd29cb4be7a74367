"""Benchmark: the tiny suite with 1 and with 2 scorer replicas, in one run.

    python -m pipelines.bench_suite [--config pipelines/suites/tiny.yaml] [--iterations 2]

Runs the suite job once per pool size (each starts its own local Ray and engines) and prints,
per size, the wall time of the whole job, the time spent in rounds, and the scorer pool's busy
fraction (share of the round time its replicas spent inside an engine call), then the ratio of
round times. The machine is shared and noisy: compare the ratio within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from pmpo_ray import optimize_suite
from pmpo_ray.run_folder.records import round_seconds as round_wall


def run_once(config: Path, replicas: int, iterations: int | None, out: Path) -> dict:
    started = time.perf_counter()
    optimize_suite(
        config,
        out=out,
        iterations=iterations,
        overrides={"scorer.replicas.num_replicas": replicas},
    )
    wall = time.perf_counter() - started
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    round_seconds = sum(round_wall(r) for r in rounds)
    busy = sum(r["scorer_busy_fraction"] * round_wall(r) for r in rounds)
    return {
        "replicas": replicas,
        "wall_seconds": wall,
        "round_seconds": round_seconds,
        "scoring_seconds": sum(r["scoring_seconds"] for r in rounds),
        "busy_fraction": busy / round_seconds if round_seconds else 0.0,
        "rounds": len(rounds),
    }


def main(argv=None) -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("pipelines/suites/tiny.yaml"))
    parser.add_argument("--iterations", type=int, help="override every task's iterations")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pmpo-bench-suite-") as scratch:
        results = [
            run_once(args.config, n, args.iterations, Path(scratch) / f"replicas-{n}")
            for n in (1, 2)
        ]
    print(f"{'replicas':>8} {'wall s':>8} {'rounds s':>9} {'scoring s':>10} {'busy':>6}")
    for r in results:
        print(
            f"{r['replicas']:>8} {r['wall_seconds']:>8.1f} {r['round_seconds']:>9.1f} "
            f"{r['scoring_seconds']:>10.1f} {r['busy_fraction']:>6.2f}"
        )
    one, two = results
    print(f"round time, 1 replica / 2 replicas: {one['round_seconds'] / two['round_seconds']:.2f}")


if __name__ == "__main__":
    main()
