"""A suite's progress on disk: what each round changed, and a line per round for people.

When the job starts it writes `state/run.json` (the tasks and their fingerprints: settings and
a hash of the data; suite/fingerprint.py). After every round it writes `state/round-NNNN.json`
with what that round changed in the tasks that finished a round in it (pmpo/checkpoint.py:
the first entry of a task is its whole state, later ones only the fields that changed and the
new entries of the growing ones), so the bytes written per round follow the work of the round,
not the length of the run. It then appends the round's observability line to `rounds.jsonl`
(stage and wall times, requests, tokens, checkpoint bytes, pool busy fractions) and prints a
progress line. Every file is plain JSON written atomically; suite/resume_point.py replays them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pmpo_ray.pmpo.checkpoint import changes, restore, snapshot
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder.layout import rounds_log_path, state_dir, state_path, state_run_path
from pmpo_ray.run_folder.records import round_seconds
from pmpo_ray.store import atomic_write_json, atomic_write_text
from pmpo_ray.suite.fingerprint import run_fingerprint
from pmpo_ray.suite.resume_point import (
    ResumePoint,
    drop_rounds_after,
    read_resume_point,
    trim_round_log,
)

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
    ):
        self.runs = list(runs)
        self.out_dir = out_dir
        self.client = client
        # The suite job passes fingerprints of each task's whole resolved job config; without
        # them, what the runs themselves know (data, optimizer, prompt format) is fingerprinted.
        self.fingerprints = dict(fingerprints or {r.task.task_id: own_fingerprint(r) for r in runs})
        self._written: dict[str, dict] = {}  # task id -> its state as the checkpoints hold it
        state_dir(out_dir).mkdir(parents=True, exist_ok=True)
        self._busy = busy_seconds(self._pool_stats())

    def on_round(self, round_index: int, advanced: Sequence[TaskRun], stats: dict) -> None:
        """Checkpoint what the round changed in `advanced` (the runs that finished a round in
        it), then log and print the round."""
        written = self.write_round(round_index, advanced)
        pools = self._pool_stats()  # one round trip to the pools per round
        stats = dict(stats, checkpoint_bytes=written, **self._busy_fractions(stats, pools))
        with open(rounds_log_path(self.out_dir), "a", encoding="utf-8") as log:
            log.write(json.dumps(stats) + "\n")
        print(self.progress_line(round_index, stats, pools), flush=True)

    def write_round(self, round_index: int, advanced: Sequence[TaskRun]) -> int:
        """state/round-NNNN.json, atomically; returns the bytes written. The first round also
        records the run (not before: a resume is checked against the record it finds)."""
        if round_index == 1 or not state_run_path(self.out_dir).is_file():
            atomic_write_json({"fingerprints": self.fingerprints}, state_run_path(self.out_dir))
        snapshots = {run.task.task_id: snapshot(run) for run in advanced}
        entries = {
            run.task.task_id: {
                "iterations": len(run.history),  # for people reading the file
                "best_loss": run.population[0].loss if run.population else None,
                **changes(self._written.get(run.task.task_id), snapshots[run.task.task_id]),
            }
            for run in advanced
        }
        text = json.dumps({"round": round_index, "tasks": entries})
        atomic_write_text(text, state_path(self.out_dir, round_index))
        self._written.update(snapshots)  # only once the file is in place
        return len(text.encode())

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
                self._written[run.task.task_id] = saved
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
        """Share of the round's wall time each pool's replicas spent inside an engine call."""
        now = busy_seconds(pools)
        wall = round_seconds(stats)
        fractions = {}
        for name, (busy, replicas) in now.items():
            capacity = wall * replicas
            before = self._busy.get(name, (0.0, replicas))[0]
            fractions[f"{name}_busy_fraction"] = (busy - before) / capacity if capacity else 0.0
        self._busy = now
        return fractions


def short_pools(pools: dict[str, dict]) -> list[str]:
    """A pool that lost replicas (a crash, a node gone) keeps working with the rest: say so."""
    return [
        f"{name} pool short: {pool['live']} of {pool['replicas']} replicas live"
        for name, pool in pools.items()
        if pool.get("live", pool["replicas"]) < pool["replicas"]
    ]


def busy_seconds(pools: dict[str, dict]) -> dict[str, tuple[float, int]]:
    """Pool name -> (busy seconds so far, replicas)."""
    return {name: (pool["busy_seconds"], pool["replicas"]) for name, pool in pools.items()}


def own_fingerprint(run: TaskRun) -> dict:
    """A run's fingerprint from what it holds itself (no engine settings)."""
    settings = {
        "optimizer": run.config.model_dump(mode="json"),
        "prompt_format": run.prompt_format.model_dump(mode="json"),
    }
    return run_fingerprint(run.task, settings)
