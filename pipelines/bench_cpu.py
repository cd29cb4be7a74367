"""CPU seconds spent over a stretch of a benchmark: this driver's (getrusage: every thread,
Ray Data's executor and Ray's own included) and the whole Ray session's.

The session is the driver plus every process descended from it (a `ray.cluster_utils.Cluster`
or a local Ray started by this driver: gcs_server, raylets, and their workers and actors) plus
any process whose command line names this session's directory (a head started by `ray start`
for this session) and its descendants. Processes are found and read (psutil, user + system
CPU, own threads only) at the start, every `interval_s` by a sampling thread, and at the end; a
process's share is its last reading minus its first (zero for one born after the start). A
process that ends between two readings loses at most one interval; the sampler's own CPU is
measured and taken out of the driver's.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field

import psutil

KINDS = ("driver", "dispatcher", "replica", "raylet", "gcs", "workers", "other")


def cores() -> int:
    """Cores this process may run on (what the CPU-bound flag measures against)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def kind_of(cmdline: list[str]) -> str:
    first = cmdline[0] if cmdline else ""
    if "ReplicaDispatcher" in first:
        return "dispatcher"
    if "EngineReplica" in first:
        return "replica"
    if first.endswith("/raylet"):
        return "raylet"
    if first.endswith("gcs_server"):
        return "gcs"
    if first.startswith("ray::"):
        return "workers"  # Ray Data tasks, idle workers, agents
    return "other"


def session_dir() -> str | None:
    """This driver's Ray session directory, when Ray is initialized (a private Ray API:
    without it only the driver's descendants are counted)."""
    try:
        import ray

        return ray._private.worker._global_node.get_session_dir_path()
    except Exception:
        return None


def driver_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds every process of the machine used so far (all cores, not idle)."""
    times = psutil.cpu_times()
    return sum(
        getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal")
    )


@dataclass
class CpuReading:
    wall_s: float = 0.0
    driver_s: float = 0.0  # this process, less the sampler
    session_s: float = 0.0  # the driver plus the session's other processes
    machine_s: float = 0.0  # every process on the machine, this session's or not
    by_kind: dict = field(default_factory=dict)  # kind -> CPU seconds (driver included)
    sampler_s: float = 0.0


class SessionCpu:
    """`with SessionCpu() as cpu: ...`, then `cpu.reading` (a CpuReading)."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.reading = CpuReading()
        self._root = psutil.Process()
        self._session_roots: set[int] = set()
        self._first: dict[tuple, float] = {}
        self._last: dict[tuple, float] = {}
        self._kind: dict[tuple, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler_s = 0.0

    def __enter__(self) -> "SessionCpu":
        directory = session_dir()
        if directory:
            for process in psutil.process_iter(["cmdline"]):
                if any(directory in arg for arg in process.info["cmdline"] or ()):
                    self._session_roots.add(process.pid)
        self._scan(first=True)
        self._thread = threading.Thread(target=self._sample, name="session-cpu", daemon=True)
        self._machine0, self._wall0 = machine_busy_s(), time.perf_counter()
        self._driver0 = driver_cpu_s()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        driver, wall, machine = driver_cpu_s(), time.perf_counter(), machine_busy_s()
        self._stop.set()
        self._thread.join()
        self._scan(first=False)
        others = {}
        for key, last in self._last.items():
            kind = self._kind[key]
            others[kind] = others.get(kind, 0.0) + max(0.0, last - self._first.get(key, 0.0))
        driver_s = driver - self._driver0 - self._sampler_s
        self.reading = CpuReading(
            wall_s=wall - self._wall0,
            driver_s=driver_s,
            session_s=driver_s + sum(others.values()),
            machine_s=machine - self._machine0,
            by_kind={"driver": driver_s, **others},
            sampler_s=self._sampler_s,
        )

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._scan(first=False)
        self._sampler_s = time.thread_time()  # this thread's CPU, all of it sampling

    def _members(self) -> list[psutil.Process]:
        """The session's processes now, the driver itself left out (getrusage counts it)."""
        children: dict[int, list[int]] = {}
        processes = {}
        for process in psutil.process_iter(["ppid"]):
            processes[process.pid] = process
            children.setdefault(process.info["ppid"], []).append(process.pid)
        found, todo = set(), [self._root.pid, *self._session_roots]
        while todo:
            pid = todo.pop()
            if pid in found:
                continue
            found.add(pid)
            todo.extend(children.get(pid, ()))
        found.discard(self._root.pid)
        return [processes[pid] for pid in found if pid in processes]

    def _scan(self, first: bool) -> None:
        for process in self._members():
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    times = process.cpu_times()
                    cmdline = process.cmdline() if key not in self._kind else None
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if first:
                self._first[key] = times.user + times.system
            if cmdline is not None or self._kind.get(key) == "workers":
                # an idle worker becomes a task's process: keep the latest name's kind
                self._kind[key] = kind_of(cmdline if cmdline is not None else _cmdline(process))
            self._last[key] = times.user + times.system


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
