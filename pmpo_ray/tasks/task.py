"""A loaded task: its examples split into a training part and a held-out part that never mix."""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pmpo_ray.tasks.config import TaskConfig, TaskFormat
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.example_files import BUILTIN_PREFIX, describe, load_data
from pmpo_ray.tasks.format_specs import format_spec
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.hub import HUB_PREFIX

log = logging.getLogger(__name__)
SKIP_HINT = "to leave out rows like this, set `invalid_rows: skip` in the task config"

# How held-out accuracy reads a generated answer; `none` for formats that generate no answers
# (preference: pairwise accuracy measures them instead).
ResolvedAnswerMatch = Literal["exact", "option", "number", "none"]


@dataclass(frozen=True)
class Task:
    task_id: str
    format: TaskFormat
    description: str
    initial_prompt: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    answer_match: ResolvedAnswerMatch = "exact"
    # Invalid rows left out of train and test (`invalid_rows: skip`), by reason.
    skipped_rows: Mapping[str, int] = field(default_factory=dict, hash=False)


def paper_split(
    examples: Sequence[Example], fraction: float, cap: int, seed: int, balanced: bool = False
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """The paper's protocol: a seeded shuffle, the first 20% (at most 50) train, the rest held out.

    At least one example goes to training; the held-out side may come out empty (e.g. with
    train_fraction 1), which `load_task` reports. `balanced` takes the training examples
    round-robin over the gold answers (in the shuffled order) instead of from the front.
    """
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_train = min(cap, max(1, math.floor(len(order) * fraction)))
    if not balanced:
        return tuple(order[:n_train]), tuple(order[n_train:])
    train = round_robin_by_answer(order, n_train)
    taken = {id(example) for example in train}
    return train, tuple(example for example in order if id(example) not in taken)


def round_robin_by_answer(order: Sequence[Example], count: int) -> tuple[Example, ...]:
    """`count` examples, one per gold answer in turn (answers in first-seen order), until
    an answer runs out and the others go on."""
    queues: dict[str, list[Example]] = {}
    for example in order:
        queues.setdefault(example.gold_answer.strip(), []).append(example)
    columns = [iter(queue) for queue in queues.values()]
    chosen: list[Example] = []
    count = min(count, len(order))
    while len(chosen) < count:
        for column in columns:
            if (example := next(column, None)) is not None and len(chosen) < count:
                chosen.append(example)
    return tuple(chosen)


def resolve_answer_match(config: TaskConfig, layout: str) -> ResolvedAnswerMatch:
    spec = format_spec(config.format)
    if not spec.generates_answers:
        if config.answer_match != "auto":
            raise DataError(
                f"task {config.name!r}: field 'answer_match' is {config.answer_match!r}, but "
                f"{spec.name} tasks are scored by pairwise accuracy; leave it 'auto'"
            )
        return "none"
    if config.answer_match != "auto":
        return config.answer_match
    if spec.answer_check == "option" or layout == "aqua":
        return "option"
    return "number" if layout == "gsm8k" else "exact"


def load_task(config: TaskConfig) -> Task:
    try:
        train, test, layout, skipped = _split(config)
    except DataError as error:
        # A row's problem (it has a reason) could be skipped instead: say how.
        hint = f"; {SKIP_HINT}" if error.reason and config.invalid_rows == "error" else ""
        raise DataError(f"task {config.name!r}: {error}{hint}") from None
    if skipped:
        log.warning("task %r: left out invalid rows: %s", config.name, describe(skipped))
    shared_ids = {e.example_id for e in train} & {e.example_id for e in test}
    shared = {(e.input, e.target) for e in train} & {(e.input, e.target) for e in test}
    if shared or shared_ids:
        raise DataError(
            f"task {config.name!r}: {len(shared or shared_ids)} example(s) in both training and "
            "held-out data"
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
        answer_match=resolve_answer_match(config, layout),
        skipped_rows=skipped,
    )


NOT_LOCAL = (BUILTIN_PREFIX, HUB_PREFIX)  # data sources that are not local paths
Split = tuple[tuple[Example, ...], tuple[Example, ...], str, dict[str, int]]


def check_data_files(config: TaskConfig) -> None:
    """The task's local data files exist (a cheap check, nothing is read): a missing one is a
    DataError naming the field and the path; a relative path also says where it was looked
    for and that a suite's `data_root` reads relative paths from another folder."""
    for name in ("data", "test_data"):
        reference = getattr(config, name)
        if reference is None or str(reference).startswith(NOT_LOCAL):
            continue
        path = Path(reference).expanduser()
        if path.exists():
            continue
        hint = ""
        if not path.is_absolute():
            hint = (
                f" (a relative path is read from the working directory, {Path.cwd()}; a suite "
                "reads relative paths from `data_root` when it is set, e.g. --set "
                "data_root=DIR)"
            )
        raise DataError(f"field '{name}': {reference}: missing{hint}")


def balances_train(config: TaskConfig) -> bool:
    """Whether the training split is label-balanced: as set, or by default for formats with
    options (the bbh8 study: every optimized multiple-choice prompt on the plain split ended
    at the held-out share of the split's majority label)."""
    if config.balance_train is not None:
        return config.balance_train
    return format_spec(config.format).has_options


def _split(config: TaskConfig) -> Split:
    """Train and test examples, the layout, and the invalid rows skipped in both."""
    check_data_files(config)
    options = {
        "columns": config.columns,
        "data_config": config.data_config,
        "skip_invalid": config.invalid_rows == "skip",
    }
    data = load_data(
        config.data, config.format, layout=config.layout, data_split=config.data_split, **options
    )
    if config.test_data is None:
        train, test = paper_split(
            data.examples,
            config.train_fraction,
            config.max_train,
            config.split_seed,
            balanced=balances_train(config),
        )
        if not test:
            raise DataError(
                f"held-out split is empty: {len(data.examples)} example(s) in {config.data} with "
                f"train_fraction {config.train_fraction} and max_train {config.max_train} leave "
                "none held out; lower train_fraction or give test_data"
            )
        return train, test, data.layout, data.skipped
    held_out = load_data(
        config.test_data,
        config.format,
        layout=data.layout,
        data_split="test",
        allow_empty=True,
        **options,
    )
    if not held_out.examples:
        raise DataError(f"held-out split is empty: test_data {config.test_data} has no examples")
    # Prefixed ids: the two files number their rows independently.
    test = tuple(replace(e, example_id=f"heldout-{e.example_id}") for e in held_out.examples)
    skipped = dict(Counter(data.skipped) + Counter(held_out.skipped))
    return tuple(data.examples), test, data.layout, skipped
