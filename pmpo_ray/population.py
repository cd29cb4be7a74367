"""The population manager: every task's top prompts, checkpointed after each round.

After every round it writes the full state of every task run (`state/round-NNNN.json`: phase,
population, history, lineage, budgets; see pmpo/checkpoint.py) and appends the round's
observability line to `rounds.jsonl` (stage wall times, requests, tokens, pool busy
fractions). Both are plain formats, written atomically, so `resume` can restore every task
run from the last finished round. At the end each task gets its run folder under `tasks/`,
and the suite its config.yaml and suite.json (written last: it marks a finished suite).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import yaml

from pmpo_ray.pmpo.checkpoint import restore, snapshot
from pmpo_ray.pmpo.run_files import write_run
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.store import atomic_write_json, atomic_write_text


class PopulationManager:
    def __init__(self, runs: Sequence[TaskRun], out_dir: Path, pools: dict | None = None):
        self.runs = list(runs)
        self.out_dir = out_dir
        self.pools = pools or {}  # name -> ReplicaPool, for busy fractions
        (out_dir / "state").mkdir(parents=True, exist_ok=True)
        (out_dir / "tasks").mkdir(exist_ok=True)
        self._busy = self._busy_seconds()

    def on_round(self, round_index: int, runs: Sequence[TaskRun], stats: dict) -> None:
        stats = dict(stats, **self._busy_fractions(stats))
        atomic_write_json(
            self.state(round_index), self.out_dir / "state" / f"round-{round_index:04d}.json"
        )
        with open(self.out_dir / "rounds.jsonl", "a", encoding="utf-8") as log:
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
        files = sorted((self.out_dir / "state").glob("round-*.json"))
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

    def finish(self, config: dict) -> dict:
        summary = {}
        for run in self.runs:
            result = run.result()
            write_run(result, self.out_dir / "tasks" / run.task.task_id, config, overwrite=True)
            summary[run.task.task_id] = {
                "initial_loss": result.initial.loss,
                "best_loss": result.best.loss,
                "iterations": len(result.history),
                "stop_reason": result.stop_reason,
                "best_prompt": result.best.text,
                "budget": asdict(result.budget),
            }
        atomic_write_text(yaml.safe_dump(config, sort_keys=False), self.out_dir / "config.yaml")
        atomic_write_json(summary, self.out_dir / "suite.json")
        return summary

    def _busy_seconds(self) -> dict[str, float]:
        return {
            name: sum(s["busy_seconds"] for s in pool.stats()) for name, pool in self.pools.items()
        }

    def _busy_fractions(self, stats: dict) -> dict[str, float]:
        """Share of the round each pool's replicas spent inside an engine call."""
        now = self._busy_seconds()
        wall = stats["generation_seconds"] + stats["scoring_seconds"]
        fractions = {}
        for name, pool in self.pools.items():
            capacity = wall * len(pool.actors)
            fractions[f"{name}_busy_fraction"] = (
                (now[name] - self._busy[name]) / capacity if capacity else 0.0
            )
        self._busy = now
        return fractions
