"""A multi-node Ray cluster on loopback for tests (`ray.cluster_utils.Cluster`), and the
session's local Ray put back afterwards."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

# Loopback, but not 127.0.0.1: ray.init rewrites that address to the machine's own IP, where
# nodes bound to loopback do not listen.
LOOPBACK_IP = "127.0.0.2"


@contextmanager
def loopback_cluster(worker_nodes: list[dict], namespace: str):
    """A CPU head (2 CPUs) plus one worker node per entry of `worker_nodes` (Cluster.add_node
    arguments), with this driver connected to it; shut down on exit."""
    import ray
    from ray.cluster_utils import Cluster

    # A driver talks to one Ray at a time: leave a session-wide local Ray (conftest's
    # `local_ray`) if an earlier module started it, and bring it back afterwards.
    had_local_ray = ray.is_initialized()
    ray.shutdown()
    with pytest.MonkeyPatch.context() as env:
        if "RAY_AUTH_MODE" not in os.environ:
            # Nodes of a test cluster need no tokens; but a local Ray started before in this
            # process chose token mode, and Ray caches that choice: keep it then.
            env.setenv("RAY_AUTH_MODE", "disabled")
        env.delenv("RAY_ADDRESS", raising=False)  # never join a head left on this machine
        loopback = {"node_ip_address": LOOPBACK_IP, "object_store_memory": 100 * 2**20}
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False, **loopback},
        )
        try:
            for node in worker_nodes:
                cluster.add_node(**node, **loopback)
            cluster.wait_for_nodes()
            ray.init(
                address=cluster.address,
                _node_ip_address=LOOPBACK_IP,
                namespace=namespace,
                log_to_driver=False,
            )
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
    if had_local_ray:
        restart_local_ray()


def restart_local_ray():
    """The same local Ray as conftest's `local_ray` fixture."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        namespace="pmpo-tests",
        log_to_driver=False,
    )
