"""Connect to Ray: a cluster when an address is known, otherwise a local one on loopback."""

from __future__ import annotations

import logging
import os

from pmpo_ray.config import RayConfig

log = logging.getLogger(__name__)


def connect_ray(config: RayConfig) -> bool:
    """Initialize Ray once; returns True when this call started a local Ray.

    The address comes from the config, then $RAY_ADDRESS (set by `ray job submit` and on
    KubeRay). Without either, Ray starts on this machine, bound to 127.0.0.1 so no port
    opens beyond loopback.
    """
    import ray

    if ray.is_initialized():
        return False
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to Ray at %s", address)
        ray.init(address=address, namespace=config.namespace, log_to_driver=True)
        return False
    log.info("starting a local Ray")
    ray.init(
        address="local",  # a new local Ray, not whatever `ray start` left on this machine
        # One logical CPU beyond the cores: replicas may reserve every core, and Ray Data's
        # small bookkeeping tasks (from_arrow reads block metadata in a 1-CPU task) must
        # still be schedulable, or the first job waits forever.
        num_cpus=(os.cpu_count() or 1) + 1,
        namespace=config.namespace,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    return True


def quiet_ray_data() -> None:
    """Ray Data logs every job's progress; a suite runs hundreds of small jobs, and the
    per-round progress line says what users need. Its warnings about free CPUs and small
    inputs are expected here: pools hold the CPUs on purpose (check_free_cpu in
    engines/ray_data_client.py guards the case that would hang), and a round's generation
    table is often one batch. `-v` on the commands skips this."""
    import warnings

    import ray.data

    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks")
