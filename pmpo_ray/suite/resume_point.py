"""Where a resumed suite starts: its checkpoints replayed up to the last intact round.

`state/run.json` names the run's tasks with their fingerprints (settings and a hash of the
data; suite/fingerprint.py); each `state/round-NNNN.json` holds what that round changed in the
tasks that finished a round in it (pmpo/checkpoint.py `entry_since`). Replaying the rounds in
order gives every task's state; a task no round mentions has not finished one and starts over. A
round file that cannot be read (a truncated or empty file after a full disk or a crash), or a
missing one, ends the replay: it is named in a warning and the rounds before it are used. A
checkpoint of another run (other tasks, settings or data), or of another run-folder format
(`run.json`'s marker), is refused. Files only: a job reads its resume point before any engine
starts, so a refused resume costs nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pmpo_ray.pmpo.checkpoint import apply
from pmpo_ray.run_folder.files import FORMAT, FORMAT_KEY
from pmpo_ray.run_folder.layout import rounds_log_path, state_dir, state_files, state_run_path
from pmpo_ray.store import atomic_write_text
from pmpo_ray.suite.fingerprint import fingerprint_changes


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resumed job starts from; path None: none usable, start at round 0."""

    path: Path | None
    round: int
    tasks: dict  # task id -> its snapshot (pmpo/checkpoint.py), for tasks that played a round


@dataclass
class Replay:
    """Round files read so far: the last one and the tasks' states."""

    path: Path | None = None
    round: int = 0
    tasks: dict | None = None


def read_resume_point(out_dir: Path, fingerprints: Mapping[str, dict]) -> ResumePoint:
    """The state after the last intact round in `out_dir`, checked to be of the run
    `fingerprints` (task id -> fingerprint) describes."""
    replay = replay_rounds(out_dir)
    if replay.path is None:
        return ResumePoint(None, 0, {})
    recorded = read_run_record(out_dir)
    check_same_run(replay.path, recorded, fingerprints)
    return ResumePoint(replay.path, replay.round, replay.tasks)


def replay_rounds(out_dir: Path) -> Replay:
    """Every round file replayed in order, up to the first that cannot be used."""
    files = state_files(out_dir)
    replay = Replay(tasks={})
    for path in files:
        try:
            data = read_checkpoint(path)
        except (OSError, ValueError) as error:
            warn(f"checkpoint {path} is truncated or unreadable ({error}); passing over it")
            break
        if data["round"] != replay.round + 1:
            warn(f"checkpoint of round {replay.round + 1} is missing before {path}")
            break
        for task_id, entry in data["tasks"].items():
            replay.tasks[task_id] = apply(replay.tasks.get(task_id), entry)
        replay.path, replay.round = path, data["round"]
    if replay.path is not None and replay.path != files[-1]:
        warn(f"falling back to the last intact checkpoint, {replay.path} (round {replay.round})")
    if replay.path is None and files:
        warn(f"no intact checkpoint in {state_dir(out_dir)}; starting again from round 0")
    return replay


def read_checkpoint(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError("empty file")
    state = json.loads(text)
    shaped = isinstance(state, dict) and isinstance(state.get("round"), int)
    if not shaped or not isinstance(state.get("tasks"), dict):
        raise ValueError("not a checkpoint: fields 'round' and 'tasks' expected")
    return state


def read_run_record(out_dir: Path) -> dict:
    """Task id -> fingerprint from state/run.json, which checkpoints of this run-folder format
    start with; checkpoints without it, or of another format, are refused in one line."""
    path = state_run_path(out_dir)
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        written_in = record.get(FORMAT_KEY)
        fingerprints = record["fingerprints"] if written_in == FORMAT else None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} cannot be read ({error}); it names the run's tasks") from None
    if fingerprints is None:
        raise ValueError(
            f"{state_dir(out_dir)}: checkpoints written by another pmpo-ray version "
            f"({FORMAT_KEY} {written_in}; this version resumes {FORMAT}): start a new --out, or "
            "resume with the version that wrote them"
        )
    return fingerprints


def check_same_run(path: Path, recorded: dict, fingerprints: Mapping[str, dict]) -> None:
    """Refuse, in one line naming what changed, to resume a checkpoint of another run."""
    saved, wanted = set(recorded), set(fingerprints)
    if saved != wanted:
        raise ValueError(
            f"{path}: checkpoint holds tasks {sorted(saved)}, the suite has "
            f"{sorted(wanted)}; resume with the same suite config"
        )
    changes = fingerprint_changes(recorded, dict(fingerprints))
    if changes:
        raise ValueError(
            f"{path}: cannot resume another run; changed since: {'; '.join(changes)}. "
            "Resume with the same config and data, or start a new --out"
        )


def drop_rounds_after(out_dir: Path, last_round: int) -> None:
    """Round files after the resumed round go: they come after one that could not be read, so
    a later replay must not pick them up behind the rounds run again."""
    for path in state_files(out_dir):
        if round_of(path) > last_round:
            path.unlink()


def round_of(path: Path) -> int:
    return int(path.stem.removeprefix("round-"))


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


def full_checkpoint_sizes(out_dir: Path) -> list[int]:
    """Per round, the bytes a checkpoint holding every task's whole state (and the
    fingerprints) would have had, as they were written before checkpoints were incremental:
    what the incremental files save, measured on a real run's own states."""
    fingerprints = read_run_record(out_dir) or {}
    tasks, sizes = {}, []
    for path in state_files(out_dir):
        data = read_checkpoint(path)
        for task_id, entry in data["tasks"].items():
            tasks[task_id] = apply(tasks.get(task_id), entry)
        whole = {"round": data["round"], "fingerprints": fingerprints, "tasks": tasks}
        sizes.append(len(json.dumps(whole).encode()))
    return sizes


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
