"""Read a task's evaluation.json (as `pmpo evaluate` writes it) into its `Evaluation` record."""

from __future__ import annotations

from pathlib import Path

from pmpo_ray.run_folder.fields import read_record
from pmpo_ray.run_folder.records import Evaluation

# Initial and optimized first, then the standard baselines, then any configured ones.
PROMPT_ORDER = ("initial", "optimized", "no_instruction", "step_by_step")


def read_evaluation(path: Path) -> Evaluation:
    """The file's record, its prompts in the order reports show them."""
    evaluation = read_record(path, Evaluation)
    order = {name: i for i, name in enumerate(PROMPT_ORDER)}
    prompts = sorted(evaluation.prompts, key=lambda p: order.get(p.name, len(order)))
    return evaluation.model_copy(update={"prompts": tuple(prompts)})
