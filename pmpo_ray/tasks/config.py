"""What a task is, as a user writes it in YAML: data, format, description, starting prompt."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pmpo_ray.config import FrozenConfig
from pmpo_ray.tasks.format_specs import TaskFormat, formats_help

DataLayout = Literal["auto", "bbh", "gsm8k", "aqua", "records"]
AnswerMatch = Literal["auto", "exact", "option", "number"]
InvalidRows = Literal["error", "skip"]


class TaskConfig(FrozenConfig):
    name: str = Field(..., min_length=1, description="Task id used in results and logs.")
    data: str = Field(
        ...,
        description="Examples: a file (.json BBH layout, .jsonl, .csv, .parquet); "
        "'builtin:bbh/navigate.json' names a sample shipped with pmpo-ray; 'hf:NAME' a Hugging "
        "Face hub dataset (needs the hub to be reachable), 'hf:NAME:SPLIT' one of its splits.",
    )
    data_config: str | None = Field(
        None, description="Hub dataset configuration (e.g. 'navigate' for BBH, 'main' for GSM8K)."
    )
    data_split: str = Field("train", description="Hub dataset split to read.")
    layout: DataLayout = Field(
        "auto",
        description="How records map to examples: bbh {input, target}; gsm8k {question, answer "
        "with '#### N'}; aqua {question, options ['A)...'], rationale, correct}; records: the "
        "format's own fields after `columns` renaming; auto guesses from the fields.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Renames the file's columns to the format's fields, e.g. "
        "{input: prompt, target: completion}; a missing column is an error naming it.",
    )
    answer_match: AnswerMatch = Field(
        "auto",
        description="How held-out accuracy reads a generated answer: exact (BBH free-form), "
        "option (multiple-choice label or option text), number (GSM8K final number); auto picks "
        "option for multiple_choice, number for gsm8k, exact otherwise.",
    )
    test_data: str | None = Field(
        None,
        description="Explicit held-out data (a file, 'builtin:' sample, or 'hf:NAME' whose split "
        "is 'test' unless named as 'hf:NAME:SPLIT'), read with the same layout and columns; when "
        "set, `data` is used whole as the training split.",
    )
    invalid_rows: InvalidRows = Field(
        "error",
        description="A row the format cannot use (e.g. a BBH target that is none of the listed "
        "options): error stops with the file and row named; skip leaves such rows out and "
        "counts them by reason in the task's result.json (public benchmark files have a few).",
    )
    format: TaskFormat = Field("supervised", description=formats_help())
    description: str = Field("", description="What the task asks; shown to the rewriter.")
    initial_prompt: str = Field(..., description="The prompt the optimization starts from.")
    train_fraction: float = Field(
        0.2, gt=0, le=1, description="Share of the data used for training (paper: 20%)."
    )
    max_train: int = Field(50, ge=1, description="Cap on training examples (paper: 50).")
    split_seed: int = Field(0, description="Seed of the train/held-out shuffle.")
    balance_train: bool | None = Field(
        None,
        description="Draw the training split round-robin over the gold answers after the "
        "seeded shuffle, so each answer (e.g. each option label) is as common as the data "
        "allows; the rest is held out. A small split with one dominant label teaches the "
        "prompt that label's prior instead of the task (README: the ablation study). False: "
        "the paper's plain split. None (default): balanced for multiple choice, where the "
        "study measured that collapse, plain for every other format.",
    )
