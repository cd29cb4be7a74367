"""A suite's progress on disk: every task run's state after each round, and how to resume it.

After every round it writes the full state of every task run (`state/round-NNNN.json`: phase,
population, history, lineage, budgets; see pmpo/checkpoint.py) with each task's fingerprint
(its settings and a hash of its data; suite/fingerprint.py), appends the round's
observability line to `rounds.jsonl` (stage wall times, requests, tokens, pool busy
fractions), then prints a progress line. Both files are plain formats, written atomically, so
`resume` can restore every task run from the last finished round. A checkpoint that cannot be
read (a truncated or empty file after a full disk or a crash) is named in a warning and the
round before it is used; one of another run (other tasks, settings or data) is refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pmpo_ray.pmpo.checkpoint import restore, snapshot
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder.layout import rounds_log_path, state_dir, state_files, state_path
from pmpo_ray.store import atomic_write_json, atomic_write_text
from pmpo_ray.suite.fingerprint import fingerprint_changes, run_fingerprint


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resumed job starts from; path None: none usable, start at round 0."""

    path: Path | None
    round: int
    tasks: dict  # task id -> the state `snapshot` saved


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
        state_dir(out_dir).mkdir(parents=True, exist_ok=True)
        self._busy = self._busy_seconds()

    def on_round(self, round_index: int, runs: Sequence[TaskRun], stats: dict) -> None:
        stats = dict(stats, **self._busy_fractions(stats))
        atomic_write_json(self.state(round_index), state_path(self.out_dir, round_index))
        with open(rounds_log_path(self.out_dir), "a", encoding="utf-8") as log:
            log.write(json.dumps(stats) + "\n")
        print(self.progress_line(round_index, stats), flush=True)

    def state(self, round_index: int) -> dict:
        return {
            "round": round_index,
            "fingerprints": self.fingerprints,
            "tasks": {
                run.task.task_id: {
                    "iterations": len(run.history),
                    "best_loss": run.population[0].loss if run.population else None,
                    **snapshot(run),
                }
                for run in self.runs
            },
        }

    def resume(self) -> int:
        """Restore every run from the last intact round's state; returns that round (0 when
        there is none). The checkpoint must be of this suite: same tasks, settings and data."""
        return self.restore(read_resume_point(self.out_dir, self.fingerprints))

    def restore(self, point: ResumePoint) -> int:
        """Put every run back where `point` (from `read_resume_point`) left it."""
        if point.path is None:  # starting over: rounds logged before are run again
            trim_round_log(self.out_dir, 0)
            return 0
        for run in self.runs:
            restore(run, point.tasks[run.task.task_id])
        trim_round_log(self.out_dir, point.round)
        print(f"resumed from {point.path} (round {point.round})", flush=True)
        return point.round

    def progress_line(self, round_index: int, stats: dict) -> str:
        parts = []
        for run in self.runs:
            loss = f"{run.population[0].loss:.3f}" if run.population else "-"
            mark = "done" if run.done else f"it {len(run.history)}"
            parts.append(f"{run.task.task_id}={loss} ({mark})")
        seconds = stats["generation_seconds"] + stats["scoring_seconds"]
        line = f"round {round_index} [{seconds:.1f} s]: " + ", ".join(parts)
        return line + "".join(f"; {note}" for note in self._short_pools())

    def _short_pools(self) -> list[str]:
        """A pool that lost replicas (a crash, a node gone) keeps working with the rest: say so."""
        if self.client is None:
            return []
        return [
            f"{name} pool short: {pool['live']} of {pool['replicas']} replicas live"
            for name, pool in self.client.stats().items()
            if pool.get("live", pool["replicas"]) < pool["replicas"]
        ]

    def _busy_seconds(self) -> dict[str, tuple[float, int]]:
        """Pool name -> (busy seconds so far, replicas)."""
        if self.client is None:
            return {}
        return {
            name: (pool["busy_seconds"], pool["replicas"])
            for name, pool in self.client.stats().items()
        }

    def _busy_fractions(self, stats: dict) -> dict[str, float]:
        """Share of the round each pool's replicas spent inside an engine call."""
        now = self._busy_seconds()
        wall = stats["generation_seconds"] + stats["scoring_seconds"]
        fractions = {}
        for name, (busy, replicas) in now.items():
            capacity = wall * replicas
            before = self._busy.get(name, (0.0, replicas))[0]
            fractions[f"{name}_busy_fraction"] = (busy - before) / capacity if capacity else 0.0
        self._busy = now
        return fractions


def own_fingerprint(run: TaskRun) -> dict:
    """A run's fingerprint from what it holds itself (no engine settings)."""
    settings = {
        "optimizer": run.config.model_dump(mode="json"),
        "prompt_format": run.prompt_format.model_dump(mode="json"),
    }
    return run_fingerprint(run.task, settings)


def read_resume_point(out_dir: Path, fingerprints: Mapping[str, dict]) -> ResumePoint:
    """The last intact checkpoint in `out_dir`, checked to be of the run `fingerprints`
    (task id -> fingerprint) describes. Reads files only: a job calls it before any engine
    starts, so a refused resume costs nothing."""
    found = last_intact_checkpoint(out_dir)
    if found is None:
        return ResumePoint(None, 0, {})
    path, state = found
    check_same_run(path, state, fingerprints)
    return ResumePoint(path, state["round"], state["tasks"])


def last_intact_checkpoint(out_dir: Path) -> tuple[Path, dict] | None:
    """(file, state) of the newest checkpoint that reads whole, each unreadable newer one named
    in a warning; None when there is none."""
    files = state_files(out_dir)
    for path in reversed(files):
        try:
            state = read_checkpoint(path)
        except (OSError, ValueError) as error:
            warn(f"checkpoint {path} is truncated or unreadable ({error}); passing over it")
            continue
        if path != files[-1]:
            warn(f"falling back to the last intact checkpoint, {path} (round {state['round']})")
        return path, state
    if files:
        warn(f"no intact checkpoint in {state_dir(out_dir)}; starting again from round 0")
    return None


def read_checkpoint(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError("empty file")
    state = json.loads(text)
    shaped = isinstance(state, dict) and isinstance(state.get("round"), int)
    if not shaped or not isinstance(state.get("tasks"), dict):
        raise ValueError("not a checkpoint: fields 'round' and 'tasks' expected")
    return state


def check_same_run(path: Path, state: dict, fingerprints: Mapping[str, dict]) -> None:
    """Refuse, in one line naming what changed, to resume a checkpoint of another run."""
    saved, wanted = set(state["tasks"]), set(fingerprints)
    if saved != wanted:
        raise ValueError(
            f"{path}: checkpoint holds tasks {sorted(saved)}, the suite has "
            f"{sorted(wanted)}; resume with the same suite config"
        )
    recorded = state.get("fingerprints")
    if recorded is None:  # written before checkpoints recorded fingerprints
        warn(f"{path} records no fingerprint; cannot check that settings and data are the same")
        return
    changes = fingerprint_changes(recorded, dict(fingerprints))
    if changes:
        raise ValueError(
            f"{path}: cannot resume another run; changed since: {'; '.join(changes)}. "
            "Resume with the same config and data, or start a new --out"
        )


def trim_round_log(out_dir: Path, last_round: int) -> None:
    """rounds.jsonl up to the resumed round: rounds after it are run again and logged again,
    and a line cut short by a crash would break every reader."""
    path = rounds_log_path(out_dir)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (
            isinstance(row, dict)
            and isinstance(row.get("round"), int)
            and row["round"] <= last_round
        ):
            kept.append(line + "\n")
    atomic_write_text("".join(kept), path)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
