"""A suite's progress on disk: what each round changed, and a line per round for people.

When the job starts it writes `state/run.json` (the tasks and their fingerprints: settings and
a hash of the data; suite/fingerprint.py). After every round it writes `state/round-NNNN.json`
with what that round changed in the tasks that finished a round in it (pmpo/checkpoint.py:
the first entry of a task is its whole state, later ones only the fields that changed and the
new entries of the growing ones), so the bytes written per round follow the work of the round,
not the length of the run. It then appends the round's observability line to `rounds.jsonl`
(stage and wall times, requests, tokens, checkpoint bytes, pool busy fractions) and prints a
progress line. Every file is plain JSON written atomically; suite/resume_point.py replays them.

The files are written on a thread of their own (suite/checkpoint_writer.py), so the driver,
which the round scheduler calls between engine jobs, only hands a round's states over; use the
checkpoints as a context manager (or call `close`) so the rounds that finished are on disk
before the job ends, also when it ends in an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pmpo_ray.pmpo.checkpoint import restore
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder.layout import state_dir
from pmpo_ray.run_folder.records import round_seconds
from pmpo_ray.suite.checkpoint_writer import CheckpointWriter, FinishedRound
from pmpo_ray.suite.fingerprint import run_fingerprint
from pmpo_ray.suite.resume_point import (
    ResumePoint,
    drop_rounds_after,
    read_resume_point,
    trim_round_log,
)
from pmpo_ray.suite.round_report import RoundCallback, round_report

# Above this many tasks the progress line sums up instead of listing every task.
LISTED_TASKS = 8


class SuiteCheckpoints:
    """Checkpoints and round log of one suite job; `client` (optional) gives busy figures."""

    def __init__(
        self,
        runs: Sequence[TaskRun],
        out_dir: Path,
        client=None,
        fingerprints: Mapping[str, dict] | None = None,
        callbacks: Sequence[RoundCallback] = (),
    ):
        self.runs = list(runs)
        self.callbacks = tuple(callbacks)  # each sees every round's RoundReport
        self.out_dir = out_dir
        self.client = client
        # The suite job passes fingerprints of each task's whole resolved job config; without
        # them, what the runs themselves know (data, optimizer, prompt format) is fingerprinted.
        self.fingerprints = dict(fingerprints or {r.task.task_id: own_fingerprint(r) for r in runs})
        self.writer = CheckpointWriter(out_dir, self.fingerprints)
        state_dir(out_dir).mkdir(parents=True, exist_ok=True)
        self._busy = busy_seconds(self._pool_stats())

    def on_round(self, round_index: int, advanced: Sequence[TaskRun], stats: dict) -> None:
        """Hand the writer what the round left in `advanced` (the runs that finished a round
        in it) and the round's line, then print the round; raises an earlier write's error."""
        pools = self._pool_stats()  # one round trip to the pools per round
        states = tuple((run.task.task_id, run.state) for run in advanced)
        busy = self._busy_fractions(stats, pools)
        self.writer.put(FinishedRound(round_index, states, dict(stats), busy))
        print(self.progress_line(round_index, stats, pools), flush=True)
        if self.callbacks:
            report = round_report(round_index, {**stats, **busy}, self.runs, pools)
            for callback in self.callbacks:
                callback(report)

    def flush(self) -> None:
        """Wait until every finished round is on disk; raises a write's error."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and stop the writer's thread; raises a write's error."""
        self.writer.close()

    def __enter__(self) -> SuiteCheckpoints:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is None:
            self.close()
        else:  # a crash keeps the rounds before it: they are written before it goes on
            self.writer.close_after(error)

    def resume(self) -> int:
        """Restore every run from the last intact round's state; returns that round (0 when
        there is none). The checkpoint must be of this suite: same tasks, settings and data."""
        return self.restore(read_resume_point(self.out_dir, self.fingerprints))

    def restore(self, point: ResumePoint) -> int:
        """Put every run back where `point` (from `read_resume_point`) left it; a run no round
        mentions starts over."""
        drop_rounds_after(self.out_dir, point.round)
        trim_round_log(self.out_dir, point.round)
        if point.path is None:  # starting over: rounds logged before are run again
            return 0
        for run in self.runs:
            saved = point.tasks.get(run.task.task_id)
            if saved is not None:
                restore(run, saved)
                self.writer.remember(run.task.task_id, run.state)
        print(f"resumed from {point.path} (round {point.round})", flush=True)
        return point.round

    def progress_line(self, round_index: int, stats: dict, pools: dict | None = None) -> str:
        """`pools`: the client's stats of this round (read from the client when not given)."""
        pools = self._pool_stats() if pools is None else pools
        line = f"round {round_index} [{round_seconds(stats):.1f} s]: " + self._task_progress()
        return line + "".join(f"; {note}" for note in short_pools(pools))

    def _task_progress(self) -> str:
        if len(self.runs) > LISTED_TASKS:
            done = sum(run.done for run in self.runs)
            iterations = sum(len(run.history) for run in self.runs)
            return f"{len(self.runs)} tasks, {done} done, {iterations} iterations in all"
        parts = []
        for run in self.runs:
            loss = f"{run.population[0].loss:.3f}" if run.population else "-"
            mark = "done" if run.done else f"it {len(run.history)}"
            parts.append(f"{run.task.task_id}={loss} ({mark})")
        return ", ".join(parts)

    def _pool_stats(self) -> dict[str, dict]:
        return self.client.stats() if self.client is not None else {}

    def _busy_fractions(self, stats: dict, pools: dict[str, dict]) -> dict[str, float]:
        """Share of the round's wall time each pool's replicas spent inside an engine call,
        and the CPU they spent per row outside it (preparing batches), in µs, for scoring
        (`<pool>_prep_us_per_row`) and generation rows (`<pool>_generation_prep_us_per_row`)."""
        now = busy_seconds(pools)
        wall = round_seconds(stats)
        fractions = {}
        for name, pool in now.items():
            before = self._busy.get(name, {})
            capacity = wall * pool["replicas"]
            busy = pool["busy"] - before.get("busy", 0.0)
            fractions[f"{name}_busy_fraction"] = busy / capacity if capacity else 0.0
            for method, key in (("score", "prep_us_per_row"), ("generate", "generation_prep")):
                prep, rows = pool[method]
                prep_before, rows_before = before.get(method, (0.0, 0))
                if rows > rows_before:
                    label = key if method == "score" else f"{key}_us_per_row"
                    fractions[f"{name}_{label}"] = 1e6 * (prep - prep_before) / (rows - rows_before)
        self._busy = now
        return fractions


def short_pools(pools: dict[str, dict]) -> list[str]:
    """A pool that lost replicas (a crash, a node gone) keeps working with the rest: say so."""
    return [
        f"{name} pool short: {pool['live']} of {pool['replicas']} replicas live"
        for name, pool in pools.items()
        if pool.get("live", pool["replicas"]) < pool["replicas"]
    ]


def busy_seconds(pools: dict[str, dict]) -> dict[str, dict]:
    """Pool name -> busy seconds so far, replicas, and per method ("score", "generate") the
    preparation CPU seconds and rows so far."""
    snapshot = {}
    for name, pool in pools.items():
        methods = pool.get("by_method", {})
        snapshot[name] = {"busy": pool["busy_seconds"], "replicas": pool["replicas"]}
        for method in ("score", "generate"):
            work = methods.get(method, {})
            snapshot[name][method] = (work.get("prep_cpu_seconds", 0.0), work.get("rows", 0))
    return snapshot


def own_fingerprint(run: TaskRun) -> dict:
    """A run's fingerprint from what it holds itself (no engine settings)."""
    settings = {
        "optimizer": run.config.model_dump(mode="json"),
        "prompt_format": run.prompt_format.model_dump(mode="json"),
    }
    return run_fingerprint(run.task, settings)
