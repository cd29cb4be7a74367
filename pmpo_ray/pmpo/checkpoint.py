"""A task run's state between rounds as JSON-ready values, and back: what resuming a suite needs.

The state is one record of stdlib dataclasses, tuples and dicts (`RunState`), so pydantic
converts it generically in both directions: no field is copied by hand, and a field added to
the state is saved without touching this file. Never pickle: checkpoints are read across
versions and by people. NaN losses (prompts that could not be scored) stay floats, which
`json.dumps` writes as NaN and `json.loads` reads back.

Checkpoints are incremental: after a run's first round only what a round changed is written
(`entry_since`), and replaying a run's entries in order (`apply`) gives its snapshot back. Most
fields are small and bounded (the population, the losses a later round reads), so a changed one
is written whole; the fields that grow with every iteration only ever get entries added, so
just the new entries are written, under "NAME+". A full snapshot is an entry too.

What changed is found by identity, not by converting the whole state: every step returns a new
state with `dataclasses.replace`, so a field a round left alone is the very object the last
written state holds, and only the fields that are new objects are looked at (and converted).
"""

from __future__ import annotations

from dataclasses import fields
from typing import get_type_hints

from pydantic import TypeAdapter

from pmpo_ray.pmpo.run_state import RunState
from pmpo_ray.pmpo.task_run import TaskRun

RUN_STATE = TypeAdapter(RunState)
# The state's fields sit beside the task id at the top level, where the suite's checkpoint
# also adds its own summary keys; restoring reads exactly these.
STATE_FIELDS = tuple(f.name for f in fields(RunState))
# Fields that only ever gain entries (rewrite_step.py appends to them), by how they grow:
# history is a list appended to, lineage a dict of new keys, scored_texts a set (sorted list).
GROWING = {"history": "list", "lineage": "dict", "scored_texts": "set"}
ADDED = "+"  # "history+" holds the records added since the run's previous entry
# One converter per field, so a changed field (or a growing one's new entries) is converted
# alone, the same way as inside the whole state.
FIELD_ADAPTERS = {
    name: TypeAdapter(hint)
    for name, hint in get_type_hints(RunState, include_extras=True).items()
    if name in STATE_FIELDS
}


def snapshot(run: TaskRun) -> dict:
    """The run's state after a finished round, in values `json.dumps` accepts."""
    return whole_entry(run.state, run.task.task_id)


def whole_entry(state: RunState, task_id: str) -> dict:
    """A task's whole state as a checkpoint entry: what `restore` reads."""
    return {"task_id": task_id, **RUN_STATE.dump_python(state, mode="json")}


def restore(run: TaskRun, data: dict) -> None:
    """Put a freshly built run (same task and config) back where `snapshot` left it."""
    if data["task_id"] != run.task.task_id:
        raise ValueError(
            f"checkpoint of task {data['task_id']!r} cannot resume task {run.task.task_id!r}"
        )
    missing = [name for name in STATE_FIELDS if name not in data]
    if missing:
        raise ValueError(
            f"checkpoint of task {data['task_id']!r}: field(s) {', '.join(missing)} missing"
        )
    run.state = RUN_STATE.validate_python({name: data[name] for name in STATE_FIELDS})


def entry_since(written: RunState | None, state: RunState, task_id: str) -> dict:
    """The entry that turns `written` (the state the checkpoints hold; None: nothing written
    yet, so the whole state) into `state`: the fields that differ, whole, and of each growing
    field only its new entries. A field that is the same object as in `written` is unchanged
    and costs nothing; only the fields that are new objects are compared and converted."""
    if written is None:
        return whole_entry(state, task_id)
    entry = {"task_id": task_id}
    for name in STATE_FIELDS:
        before, after = getattr(written, name), getattr(state, name)
        if after is before:
            continue
        if name in GROWING:
            added = added_entries(GROWING[name], before, after, f"{task_id}.{name}")
            if added:
                entry[name + ADDED] = FIELD_ADAPTERS[name].dump_python(added, mode="json")
        elif after != before:  # pruned() rebuilds dicts that mostly hold the same values
            entry[name] = FIELD_ADAPTERS[name].dump_python(after, mode="json")
    return entry


def added_entries(kind: str, before, after, where: str):
    """What a growing field gained; `before` must be where it grew from, since `apply` can
    only add entries (a history whose old records were replaced would resume wrongly)."""
    if kind == "list":
        if len(after) < len(before) or (before and after[len(before) - 1] is not before[-1]):
            raise ValueError(f"{where}: records were replaced, not appended; cannot checkpoint")
        return after[len(before) :]
    if kind == "dict":
        return {key: value for key, value in after.items() if key not in before}
    return after - before


def apply(state: dict | None, entry: dict) -> dict:
    """`state` (a snapshot, None before the first entry) with `entry` replayed on it; keys
    that are not state fields (summaries a checkpoint adds for readers) are ignored."""
    merged = dict(state or {})
    for key, value in entry.items():
        name = key.removesuffix(ADDED)
        if key.endswith(ADDED) and name in GROWING:
            merged[name] = grown(GROWING[name], merged.get(name), value)
        elif key == "task_id" or key in STATE_FIELDS:
            merged[key] = value
    return merged


def grown(kind: str, before, added):
    if kind == "list":
        return [*(before or []), *added]
    if kind == "dict":
        return {**(before or {}), **added}
    return sorted(set(before or []) | set(added))
