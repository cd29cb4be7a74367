"""A loaded task: its examples split into a training part and a held-out part that never mix."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Sequence

from pmpo_ray.requests import Example
from pmpo_ray.tasks.config import TaskConfig, TaskFormat
from pmpo_ray.tasks.example_files import load_examples
from pmpo_ray.tasks.formats import DataError


@dataclass(frozen=True)
class Task:
    task_id: str
    format: TaskFormat
    description: str
    initial_prompt: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]


def paper_split(
    examples: Sequence[Example], fraction: float, cap: int, seed: int
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """The paper's protocol: a seeded shuffle, the first 20% (at most 50) train, the rest held out.

    At least one example goes to each side when there are two or more.
    """
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_train = min(cap, max(1, math.floor(len(order) * fraction)))
    if len(order) >= 2:
        n_train = min(n_train, len(order) - 1)
    return tuple(order[:n_train]), tuple(order[n_train:])


def explicit_test(config: TaskConfig) -> tuple[Example, ...]:
    """Held-out examples from their own file, ids prefixed so they never collide with training."""
    examples = load_examples(config.test_data, config.format)
    return tuple(replace(e, example_id=f"heldout-{e.example_id}") for e in examples)


def load_task(config: TaskConfig) -> Task:
    examples = load_examples(config.data, config.format)
    if config.test_data is not None:
        train, test = tuple(examples), explicit_test(config)
    else:
        train, test = paper_split(
            examples, config.train_fraction, config.max_train, config.split_seed
        )
    shared = {(e.input, e.target) for e in train} & {(e.input, e.target) for e in test}
    if shared:
        raise DataError(
            f"task {config.name!r}: {len(shared)} example(s) in both training and held-out data"
        )
    if not config.initial_prompt.strip():
        raise DataError(f"task {config.name!r}: field 'initial_prompt' is empty")
    return Task(
        task_id=config.name,
        format=config.format,
        description=config.description,
        initial_prompt=config.initial_prompt,
        train=train,
        test=test,
    )
