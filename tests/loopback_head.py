"""A throwaway Ray cluster on loopback for the tests about clusters: `ray start --head` with
every port free and chosen here, stopped by the process id this session started. One head
serves the session's cluster tests (tests/conftest.py): each takes ~40 s to start; the metrics
tests start their own (tests/test_ray_metrics.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
# No token auth and no inherited address; emitters report metrics every second (the floor)
# instead of every 10 s, so a test that scrapes them waits less.
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "RAY_ADDRESS": "",
    "RAY_metrics_report_interval_ms": "1000",
}


@dataclass(frozen=True)
class LoopbackHead:
    address: str  # the dashboard's, for `ray job submit --address`
    metrics_url: str  # the node's Prometheus endpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def loopback_head(folder: Path):
    """A running head; its log is folder/head.log."""
    gcs_port, dashboard_port, metrics_port = free_port(), free_port(), free_port()
    # Every agent gets its own free port: a local Ray another test keeps alive in this session
    # holds the defaults (52365...), and a head whose job agent cannot bind takes no jobs.
    agent_ports = [
        f"--{flag}={free_port()}"
        for flag in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "ray-client-server-port",
        )
    ]
    log = folder / "head.log"
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            f"--metrics-export-port={metrics_port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--disable-usage-stats",
            *agent_ports,
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=ENV,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_for_dashboard(address, head, log)
        yield LoopbackHead(address, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        stop(head)


def wait_for_dashboard(address, head, log, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited: {log.read_text()[-2000:]}")
        probe = subprocess.run(
            [RAY, "job", "list", "--address", address], capture_output=True, text=True, env=ENV
        )
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"Ray dashboard at {address} did not come up: {probe.stderr[-1500:]}")


def stop(head):
    """SIGTERM to the `ray start --block` we started (it shuts its children down), then its
    process group if anything is left."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
