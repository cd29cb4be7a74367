"""A suite's round files written off the driver thread, in round order.

The round scheduler calls the driver back between engine jobs, so whatever the callback does
delays the next job. The driver therefore only hands over what a round left: the states of the
tasks that finished a round in it (`RunState` is immutable, so they are held by reference and
no copy is made) and the round's log line. One thread per suite job then finds what changed
(pmpo/checkpoint.py `entry_since`), converts it to JSON, writes `state/round-NNNN.json`
atomically and appends the line, with the file's size, to `rounds.jsonl`: a round's line is
never logged before its checkpoint is in place.

A failed write is not lost: it is raised at the driver's next round, flush or close, and
nothing after it is written (a missing round ends a replay anyway, suite/resume_point.py).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pmpo_ray.pmpo.checkpoint import entry_since
from pmpo_ray.pmpo.run_state import RunState
from pmpo_ray.run_folder.files import FORMAT, FORMAT_KEY
from pmpo_ray.run_folder.layout import rounds_log_path, state_path, state_run_path
from pmpo_ray.store import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishedRound:
    """What the driver hands over when a round ends."""

    index: int
    states: tuple[tuple[str, RunState], ...]  # (task id, state) of the tasks that advanced
    stats: dict  # the round's log line, before checkpoint_bytes
    busy: dict  # pool busy fractions, after checkpoint_bytes in the line


class CheckpointWriter:
    """Writes `FinishedRound`s put to it, one at a time, on a thread started at the first."""

    def __init__(self, out_dir: Path, fingerprints: Mapping[str, dict]):
        self.out_dir = out_dir
        self.fingerprints = dict(fingerprints)
        # task id -> the state its checkpoints hold; only the writer thread touches it once
        # rounds are put (before that, `remember` fills it for a resumed run).
        self._written: dict[str, RunState] = {}
        self._queue: queue.Queue[FinishedRound | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def remember(self, task_id: str, state: RunState) -> None:
        """`state` is what the checkpoints on disk hold for the task (a resumed run)."""
        self._written[task_id] = state

    def put(self, finished: FinishedRound) -> None:
        """Queue a round to write; raises an earlier round's write error instead."""
        self.raise_error()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="checkpoint-writer", daemon=True
            )
            self._thread.start()
        self._queue.put(finished)

    def flush(self) -> None:
        """Wait until every round put so far is on disk (or a write failed: raise it)."""
        self._queue.join()
        self.raise_error()

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise a write error if there was one."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.raise_error()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close_after(self, error: BaseException) -> None:
        """Close while `error` is on its way out: the rounds that finished still reach the
        disk, and a write error of its own is logged, not raised over `error`."""
        try:
            self.close()
        except Exception as failed:  # noqa: BLE001 - the driver's error goes on
            if failed is not error:
                log.error("checkpoints after the round that failed were not written: %s", failed)

    def _loop(self) -> None:
        while True:
            finished = self._queue.get()
            try:
                if finished is None:
                    return
                if self._error is None:
                    self._write(finished)
            except BaseException as error:  # noqa: BLE001 - raised on the driver thread
                error.add_note(f"while writing the checkpoint of round {finished.index}")
                self._error = error
            finally:
                self._queue.task_done()

    def _write(self, finished: FinishedRound) -> None:
        """state/round-NNNN.json, atomically, then its line in rounds.jsonl. The first round
        also records the run (not before: a resume is checked against the record it finds)."""
        if finished.index == 1 or not state_run_path(self.out_dir).is_file():
            record = {FORMAT_KEY: FORMAT, "fingerprints": self.fingerprints}
            atomic_write_json(record, state_run_path(self.out_dir))
        entries = {
            task_id: {
                "iterations": len(state.history),  # for people reading the file
                "best_loss": state.population[0].loss if state.population else None,
                **entry_since(self._written.get(task_id), state, task_id),
            }
            for task_id, state in finished.states
        }
        text = json.dumps({"round": finished.index, "tasks": entries})
        atomic_write_text(text, state_path(self.out_dir, finished.index))
        self._written.update(finished.states)  # only once the file is in place
        line = dict(finished.stats, checkpoint_bytes=len(text.encode()), **finished.busy)
        with open(rounds_log_path(self.out_dir), "a", encoding="utf-8") as rounds:
            rounds.write(json.dumps(line) + "\n")
