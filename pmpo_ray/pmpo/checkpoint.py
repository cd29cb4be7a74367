"""A task run's state between rounds as JSON-ready values, and back: what resuming a suite needs.

The state is one record of stdlib dataclasses, tuples and dicts (`RunState`), so pydantic
converts it generically in both directions: no field is copied by hand, and a field added to
the state is saved without touching this file. Never pickle: checkpoints are read across
versions and by people. NaN losses (prompts that could not be scored) stay floats, which
`json.dumps` writes as NaN and `json.loads` reads back.
"""

from __future__ import annotations

from dataclasses import fields

from pydantic import TypeAdapter

from pmpo_ray.pmpo.run_state import RunState
from pmpo_ray.pmpo.task_run import TaskRun

RUN_STATE = TypeAdapter(RunState)
# The state's fields sit beside the task id at the top level, where the suite's checkpoint
# also adds its own summary keys; restoring reads exactly these.
STATE_FIELDS = tuple(f.name for f in fields(RunState))


def snapshot(run: TaskRun) -> dict:
    """The run's state after a finished round, in values `json.dumps` accepts."""
    return {"task_id": run.task.task_id, **RUN_STATE.dump_python(run.state, mode="json")}


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
