"""A suite's progress as Ray metrics: a round callback (suite/round_report.py) that the driver
adds while it is connected to Ray (`ray_metrics`), exporting with `ray.util.metrics`.

Ray's metrics agent on the driver's node serves them on that node's Prometheus endpoint
(`ray start --metrics-export-port`) as `ray_pmpo_<name>` (`METRICS`), each tagged with the
suite's name (`suite`) beside Ray's own tags (SessionName, NodeAddress, WorkerId, ...);
cluster/grafana/pmpo-ray-dashboard.json charts them.

All are gauges. The work totals are the tasks' own (result.json's `work`, restored rounds
included on a resume) and only grow during a run: use `rate()`/`increase()` on them as on
counters. Gauges let a resumed job go on from the run's totals, and two exporters of one suite
cannot count twice. Ray's agent drops a gauge value two report intervals
(`RAY_metrics_report_interval_ms`, 10 s by default) after it was last recorded, so the last
values are recorded again every half interval until `close`: they stay visible between rounds
and during the evaluation, and vanish shortly after the suite ends.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pmpo_ray.suite.round_report import RoundReport

# name (Prometheus: ray_pmpo_NAME) -> description, and the tag it has beside `suite`
METRICS = {
    "rounds_done": ("Rounds finished (rounds.jsonl lines)", None),
    "tasks_active": ("Tasks still optimizing", None),
    "tasks_finished": ("Tasks done", None),
    "best_loss": ("A task's best training loss so far", "task"),
    "forward_passes": ("Forward passes (scored rows) so far, all tasks", None),
    "tokens_scored": ("Tokens in the scored rows so far, all tasks", None),
    "tokens_generated": ("Tokens generated so far, all tasks", None),
    "pool_replicas": ("Replicas a pool started", "pool"),
    "pool_live_replicas": ("Live replicas of a pool", "pool"),
    "pool_busy_fraction": ("Share of the last round the pool spent in engine calls", "pool"),
}
WORK = ("forward_passes", "tokens_scored", "tokens_generated")  # Work fields, summed over tasks


@contextmanager
def ray_metrics(suite: str) -> Iterator[RayMetrics | None]:
    """A RayMetrics for the suite's rounds while this process is connected to Ray (None
    otherwise: engines in process), closed on leaving."""
    ray = sys.modules.get("ray")  # never imports Ray for a run without it
    if ray is None or not ray.is_initialized():
        yield None
        return
    metrics = RayMetrics(suite)
    try:
        yield metrics
    finally:
        metrics.close()


class RayMetrics:
    """Round callback exporting a suite's progress as Ray metrics; build it in a process
    connected to Ray, and `close` it when the suite ends."""

    def __init__(self, suite: str = ""):
        import ray
        from ray.util.metrics import Gauge

        self.gauges = {
            name: Gauge(
                f"pmpo_{name}", description, tag_keys=("suite",) + ((tag,) if tag else ())
            ).set_default_tags({"suite": suite})
            for name, (description, tag) in METRICS.items()
        }
        try:  # Ray's agent keeps a gauge value for 2 report intervals (1 s at least)
            interval = max(ray._config.metrics_report_interval_ms(), 1000) / 1000
        except Exception:  # a private API: Ray's default
            interval = 10.0
        self.refresh_seconds = interval / 2
        self._values: list[tuple] = []  # (metric name, value, tags) of the last round
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, report: RoundReport) -> None:
        values = [
            ("rounds_done", report.round, None),
            ("tasks_finished", report.tasks_done, None),
            ("tasks_active", len(report.tasks) - report.tasks_done, None),
        ]
        values += [
            ("best_loss", task.best_loss, {"task": task.task_id})
            for task in report.tasks
            if task.best_loss is not None
        ]
        values += [
            (field, sum(getattr(task.work, field) for task in report.tasks), None) for field in WORK
        ]
        for name, pool in report.pools.items():
            tags = {"pool": name}
            values.append(("pool_replicas", pool["replicas"], tags))
            values.append(("pool_live_replicas", pool.get("live", pool["replicas"]), tags))
            busy = report.line.get(f"{name}_busy_fraction")
            if busy is not None:
                values.append(("pool_busy_fraction", busy, tags))
        with self._lock:
            self._values = values
        self._record()
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._refresh, name="pmpo-metrics", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop recording the last values again; Ray drops them two intervals later."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()

    def _record(self) -> None:
        with self._lock:
            for name, value, tags in self._values:
                self.gauges[name].set(value, tags=tags)

    def _refresh(self) -> None:
        while not self._closed.wait(self.refresh_seconds):
            self._record()
