"""What identifies a task's optimization, so that --resume never continues another run.

Every checkpoint records, per task, the task's resolved settings (as flat dotted fields) and a
hash of the examples actually loaded (training and held-out). Resuming compares them with the
current ones and names what differs: another data file, another seed, another model. Settings
a resumed run may change are left out (`MAY_CHANGE_ON_RESUME`).
"""

from __future__ import annotations

import hashlib
import json
from fnmatch import fnmatchcase

from pmpo_ray.config import FrozenConfig
from pmpo_ray.tasks.task import Task

# Fields (dotted, `*` matches any one name) that may change when a run is resumed, because
# none alters what a finished round computed:
MAY_CHANGE_ON_RESUME = (
    # when to stop: resuming with more iterations (or patience) extends a run
    "optimizer.iterations",
    "optimizer.patience",
    # held-out evaluation runs after the optimization and resumes on its own terms
    "evaluation.*",
    # where the run is logged (MLflow): read by the driver, never by the optimization
    "tracking.*",
    # where the data lies: its content is fingerprinted itself, so a moved file resumes
    "task.data",
    "task.test_data",
    # memory and speed knobs of the engines: the same numbers, computed in other batches or on
    # another machine (resuming after running out of memory is why one changes them)
    "*.max_batch_tokens",
    "*.prefix_sharing",
    "*.kv_cache_gib",
    "*.gpu_memory_utilization",
    "*.enforce_eager",
    "*.block_size",
    "*.tensor_parallel_size",
    "*.model.cache_dir",
    "*.model.allow_download",
    # how an HTTP engine reaches its server: the same served model (checked before a run
    # starts), reached at another address, with another key variable, patience or concurrency
    "*.engine.base_url",
    "*.engine.api_key_env",
    "*.engine.timeout_s",
    "*.engine.max_in_flight",
    "*.engine.retries",
    "*.engine.retry_deadline_s",
    # how many replicas a pool runs, and their resources and batch sizes: the same rows are
    # computed, by more or fewer engines
    "*.replicas.*",
)
MISSING = object()  # a field one side has and the other lacks


def run_fingerprint(task: Task, settings: FrozenConfig | dict) -> dict:
    """{"config": dotted field -> value, "data": hash of the loaded examples}; `settings` is
    the task's resolved job config (or the parts of it a caller knows), as it runs."""
    raw = settings.model_dump(mode="json") if isinstance(settings, FrozenConfig) else settings
    fields = {
        name: value
        for name, value in flat_fields(raw).items()
        if not any(fnmatchcase(name, pattern) for pattern in MAY_CHANGE_ON_RESUME)
    }
    return {"config": fields, "data": data_hash(task)}


def data_hash(task: Task) -> str:
    """SHA-256 of the task's training and held-out examples, as loaded and split."""
    # An example's own fields (vars): the same JSON as dataclasses.asdict, which deep-copies
    # every example and cost more than the hashing (resumes compare these hashes).
    examples = {"train": [vars(e) for e in task.train], "test": [vars(e) for e in task.test]}
    text = json.dumps(examples, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def flat_fields(raw: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are values of their own."""
    fields: dict[str, object] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            fields.update(flat_fields(value, f"{name}."))
        else:
            fields[name] = value
    return fields


def fingerprint_changes(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's fingerprint and the current one, per task, e.g.
    ["task 'alpha': its data", "task 'beta': optimizer.seed, task.description"]; tasks only in
    one of them are the caller's to report."""
    changes = []
    for task_id in sorted(set(saved) & set(current)):
        old, new = saved[task_id], current[task_id]
        what = ["its data"] if old.get("data") != new["data"] else []
        old_fields, new_fields = old.get("config", {}), new["config"]
        what += sorted(
            name
            for name in set(old_fields) | set(new_fields)
            if old_fields.get(name, MISSING) != new_fields.get(name, MISSING)
        )
        if what:
            changes.append(f"task {task_id!r}: {', '.join(what)}")
    return changes
