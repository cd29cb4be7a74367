"""What a task is, as a user writes it in YAML: data, format, description, starting prompt."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pmpo_ray.config import FrozenConfig

TaskFormat = Literal["supervised", "multiple_choice", "preference"]


class TaskConfig(FrozenConfig):
    name: str = Field(..., min_length=1, description="Task id used in results and logs.")
    data: str = Field(
        ...,
        description="Examples file (.jsonl or BBH .json); 'builtin:bbh/navigate.json' names a "
        "sample shipped with pmpo-ray.",
    )
    test_data: str | None = Field(
        None,
        description="Explicit held-out file; when set, `data` is used whole as the training split.",
    )
    format: TaskFormat = Field(
        "supervised",
        description="supervised: input -> target; multiple_choice: a question with options, the "
        "distractors kept as rejected answers; preference: instruction, chosen, rejected.",
    )
    description: str = Field("", description="What the task asks; shown to the rewriter.")
    initial_prompt: str = Field(..., description="The prompt the optimization starts from.")
    train_fraction: float = Field(
        0.2, gt=0, le=1, description="Share of the data used for training (paper: 20%)."
    )
    max_train: int = Field(50, ge=1, description="Cap on training examples (paper: 50).")
    split_seed: int = Field(0, description="Seed of the train/held-out shuffle.")
