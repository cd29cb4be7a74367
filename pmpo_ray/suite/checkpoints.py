"""A suite's progress on disk: every task run's state after each round, and how to resume it.

After every round it writes the full state of every task run (`state/round-NNNN.json`: phase,
population, history, lineage, budgets; see pmpo/checkpoint.py) and appends the round's
observability line to `rounds.jsonl` (stage wall times, requests, tokens, pool busy
fractions), then prints a progress line. Both files are plain formats, written atomically, so
`resume` can restore every task run from the last finished round.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from pmpo_ray.pmpo.checkpoint import restore, snapshot
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder.layout import rounds_log_path, state_dir, state_files, state_path
from pmpo_ray.store import atomic_write_json


class SuiteCheckpoints:
    """Checkpoints and round log of one suite job; `client` (optional) gives busy figures."""

    def __init__(self, runs: Sequence[TaskRun], out_dir: Path, client=None):
        self.runs = list(runs)
        self.out_dir = out_dir
        self.client = client
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
        """Restore every run from the last finished round's state; returns that round (0 when
        there is none). The suite's tasks must be the ones the checkpoint holds."""
        files = state_files(self.out_dir)
        if not files:
            return 0
        state = json.loads(files[-1].read_text(encoding="utf-8"))
        saved, wanted = set(state["tasks"]), {run.task.task_id for run in self.runs}
        if saved != wanted:
            raise ValueError(
                f"{files[-1]}: checkpoint holds tasks {sorted(saved)}, the suite has "
                f"{sorted(wanted)}; resume with the same suite config"
            )
        for run in self.runs:
            restore(run, state["tasks"][run.task.task_id])
        print(f"resumed from {files[-1]} (round {state['round']})", flush=True)
        return state["round"]

    def progress_line(self, round_index: int, stats: dict) -> str:
        parts = []
        for run in self.runs:
            loss = f"{run.population[0].loss:.3f}" if run.population else "-"
            mark = "done" if run.done else f"it {len(run.history)}"
            parts.append(f"{run.task.task_id}={loss} ({mark})")
        seconds = stats["generation_seconds"] + stats["scoring_seconds"]
        return f"round {round_index} [{seconds:.1f} s]: " + ", ".join(parts)

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
