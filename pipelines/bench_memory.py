"""How much host memory does one replica hold, against the estimate the pool check uses?

    python -m pipelines.bench_memory [--backend vllm] [--kv-cache-gib 1] [--max-batch-tokens N]

Starts one replica on a local Ray (one engine at a time), and measures the resident memory of
its whole process tree (the actor, vLLM's engine-core and worker processes) at rest and at its
peak while scoring rows that fill a forward batch; prints both beside
`replica_memory.replica_memory_bytes`. What the constants in engines/replica_memory.py are checked
on.
"""

from __future__ import annotations

import argparse
import threading
import time

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.models import local_model_folder
from pmpo_ray.engines.registry import BACKENDS
from pmpo_ray.engines.replica_memory import GIB, replica_memory_bytes
from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example import Example


def tree_rss(pid: int) -> int:
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def full_batch(tokens: int):
    """Rows of ~400 tokens each, enough of them to fill `tokens` several times over."""
    text = "the quick brown fox jumps over the lazy dog " * 40
    examples = [Example(str(i), f"{i} {text}", "an answer") for i in range(3 * tokens // 400)]
    return score_requests(
        [("p", "Answer.")], examples, task_id="mem", kind="candidate", role="system"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=list(BACKENDS), default="vllm")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    args = parser.parse_args()
    settings = {"max_batch_tokens": args.max_batch_tokens, "prefix_sharing": False}
    if args.backend == "vllm":
        settings["kv_cache_gib"] = args.kv_cache_gib
    engine = BACKENDS[args.backend].config_class(**settings)
    estimate = replica_memory_bytes(engine, False, local_model_folder(engine.model))

    import ray

    from pmpo_ray.engines.replicas import ReplicaPool

    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")
    pool = ReplicaPool.start(engine, ReplicaConfig(num_cpus=1))
    try:
        pid = ray.get(pool.actors[0].pid.remote())
        time.sleep(2)
        at_rest = tree_rss(pid)
        peak, done = [at_rest], threading.Event()

        def sample():
            while not done.is_set():
                peak.append(tree_rss(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ray.get(pool.actors[0].score.remote(full_batch(args.max_batch_tokens)))
        done.set()
        sampler.join()
    finally:
        pool.shutdown()
        ray.shutdown()
    print(
        f"{args.backend} replica, kv_cache_gib={args.kv_cache_gib:g}, "
        f"max_batch_tokens={args.max_batch_tokens}"
    )
    print(f"resident at rest: {at_rest / GIB:.2f} GiB")
    print(f"resident peak while scoring: {max(peak) / GIB:.2f} GiB")
    print(f"estimate (replica_memory.replica_memory_bytes): {estimate / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
