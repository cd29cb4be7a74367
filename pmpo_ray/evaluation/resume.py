"""Which earlier evaluations still hold, so an evaluation cut short continues where it stopped.

Each evaluation.json records its basis: the evaluation settings, a hash of the optimization
result it measured (the task's resolved config, its initial and best prompts and losses) and
a hash of the held-out examples and prompts. A task whose file holds the current basis (and
whose predictions exist) is kept; a missing, truncated, other-basis or unreadable file (one
another pmpo-ray version wrote) is evaluated again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from pmpo_ray.evaluation.heldout import EvalTask
from pmpo_ray.jobs import EvaluationConfig
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.fields import read_record
from pmpo_ray.run_folder.records import Evaluation, TaskFolder

BASIS = "basis"  # the field of evaluation.json that holds it


def evaluation_basis(folder: TaskFolder, task: EvalTask, config: EvaluationConfig) -> dict:
    """What an evaluation of `folder` with `config` depends on, as JSON values."""
    # The same whether the folder was read from its files or built from results in memory.
    result = {
        "config": folder.config.model_dump(mode="json", exclude={"evaluation"}),
        "initial_prompt": folder.initial_prompt,
        "best_prompt": folder.best_prompt,
        "initial_loss": folder.initial_loss,
        "best_loss": folder.best_loss,
        "iterations": folder.iterations,
        "candidates_scored": folder.candidates_scored,
        "tokens_generated": folder.training_work.tokens_generated,
    }
    heldout = {
        "examples": [asdict(example) for example in task.examples],
        "prompts": [asdict(prompt) for prompt in task.prompts],
    }
    return {
        "settings": config.model_dump(mode="json"),
        "result": _sha256(result),
        "heldout": _sha256(heldout),
    }


def kept_evaluation(task_dir: Path, basis: dict) -> dict | None:
    """The task's earlier evaluation.json content when it holds `basis`, else None (evaluate
    again)."""
    try:
        kept = read_record(Path(task_dir) / layout.EVALUATION, Evaluation)
    except ValueError:  # none yet, cut short, or another version's: either way, evaluate again
        return None
    if kept.basis != basis or not (Path(task_dir) / layout.PREDICTIONS).is_file():
        return None
    return kept.model_dump(mode="json")


def _sha256(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
