"""The simulated world `pipelines/bench_scale.py` measures: synthetic BBH-style tasks, suite
configs whose scorer and rewriter pools run the `simulated` backend, and a multi-node Ray
cluster of logical GPUs on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

INITIAL_PROMPT = "Let's think step by step. Answer with Yes or No. Read the question carefully."
WORDS = (
    "red blue green stone river tall short seven three bright quiet window garden north south "
    "before after under above every none some many always never cold warm fast slow"
).split()


def write_tasks(
    folder: Path, count: int, examples: int | None = None, max_train: int = 8
) -> list[dict]:
    """`count` BBH-style data files (input, target) and their suite task entries, each
    training on `max_train` examples (the default split trains on 20% of the data, so
    `examples` defaults to enough for that: 5 x max_train, at least 40)."""
    examples = examples if examples is not None else max(40, 5 * max_train)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(count):
        rng = random.Random(index)
        records = []
        for example in range(examples):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 40)))
            question = f"Task {index}, case {example}: is this statement consistent? {words}."
            target = rng.choice(("Yes", "No"))
            records.append({"input": f"{question}\nOptions:\n- Yes\n- No", "target": target})
        path = folder / f"task{index:03d}.json"
        path.write_text(json.dumps({"examples": records}))
        task = {
            "name": f"task{index:03d}",
            "data": str(path),
            "description": f"Synthetic task {index}: decide whether the statement is consistent.",
            "initial_prompt": INITIAL_PROMPT,
            "max_train": max_train,
        }
        entries.append({"task": task})
    return entries


def pool(replicas: int, engine: dict, batch_rows: int | None) -> dict:
    """R simulated replicas of one logical GPU (and one logical CPU) each; `batch_rows` None
    leaves ReplicaConfig's default."""
    placement = {"num_replicas": replicas, "num_cpus": 1, "num_gpus": 1}
    if batch_rows is not None:
        placement["batch_rows"] = batch_rows
    return {"engine": {"backend": "simulated", **engine}, "replicas": placement}


def suite_config(
    tasks: list[dict], replicas: int, engine: dict, iterations: int, args, shared: bool = False
):
    """Scorer and rewriter pools of R replicas each, or with `shared` one scorer pool that
    also generates."""
    from pmpo_ray.jobs import SuiteConfig

    config = {
        "name": f"bench-scale-{len(tasks)}",
        "tasks": tasks,
        "optimizer": {"iterations": iterations},
        "scorer": pool(replicas, engine, args.batch_rows),
    }
    if not shared:
        config["rewriter"] = pool(replicas, engine, args.batch_rows)
    if args.cohorts is not None:  # else the driver's default
        config["cohorts"] = args.cohorts
    return SuiteConfig.model_validate(config)


@contextlib.contextmanager
def simulated_cluster(gpu_nodes: int, gpus_per_node: int, cpus_per_gpu: int, head_cpus: int):
    """A CPU head and `gpu_nodes` nodes of logical GPUs, on loopback, this driver connected;
    every process it started is stopped on exit (by the cluster, not `ray stop`)."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local nodes need no tokens
    os.environ.pop("RAY_ADDRESS", None)  # never join a head left on this machine
    # Not 127.0.0.1: ray.init rewrites that to the machine's own IP (tests/ray_clusters.py).
    loopback = {"node_ip_address": "127.0.0.2", "object_store_memory": 200 * 2**20}
    head = {"num_cpus": head_cpus, "num_gpus": 0, "include_dashboard": False, **loopback}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(gpu_nodes):
            cpus = gpus_per_node * cpus_per_gpu
            cluster.add_node(num_cpus=cpus, num_gpus=gpus_per_node, **loopback)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, _node_ip_address="127.0.0.2", log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def engine_costs(args) -> dict:
    return {
        "seconds_per_call": args.call_ms / 1e3,
        "seconds_per_scored_token": args.scored_token_us / 1e6,
        "seconds_per_generated_token": args.generated_token_us / 1e6,
    }
