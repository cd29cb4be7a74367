"""Read records from a Hugging Face hub dataset named as 'hf:NAME' (or 'hf:NAME:SPLIT').

Hub rows have the same layouts as the files (BBH {input, target}, GSM8K {question, answer},
AQuA-RAT {question, options, rationale, correct}), so they go through the same conversion.
"""

from __future__ import annotations

from typing import Iterable

from pmpo_ray.errors import first_line
from pmpo_ray.tasks.formats import DataError

HUB_PREFIX = "hf:"
LOCAL_HINT = "download it once and point `data` at a local .jsonl, .json, .csv or .parquet file"


def is_hub_reference(reference: object) -> bool:
    return str(reference).startswith(HUB_PREFIX)


def parse_hub_reference(reference: str, default_split: str) -> tuple[str, str]:
    """(name, split): hub names hold '/' but never ':', so a trailing ':SPLIT' is unambiguous."""
    name, _, split = reference.removeprefix(HUB_PREFIX).partition(":")
    if not name.strip():
        raise DataError(f"{reference}: no dataset name after 'hf:'")
    return name, split or default_split


def hub_records(reference: str, config: str | None, split: str) -> list[tuple[int, dict]]:
    name, split = parse_hub_reference(reference, split)
    return dataset_records(load_hub_dataset(name, config, split))


def dataset_records(rows: Iterable[dict]) -> list[tuple[int, dict]]:
    """A `datasets.Dataset` (or any iterable of row dicts) as numbered records."""
    return [(row, dict(record)) for row, record in enumerate(rows, start=1)]


def load_hub_dataset(name: str, config: str | None, split: str):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    source = f"hf:{name}"
    try:
        return datasets.load_dataset(name, config, split=split)
    except DatasetNotFoundError as error:
        raise DataError(
            f"{source}: the Hugging Face hub has no dataset of that name, or it is private or "
            f"gated; the dataset is unknown ({first_line(error)}); check the name, or {LOCAL_HINT}"
        ) from None
    except OSError as error:  # ConnectionError, offline mode, timeouts
        raise DataError(
            f"{source}: the Hugging Face hub could not be reached ({first_line(error)}); "
            f"{LOCAL_HINT}"
        ) from None
    except ValueError as error:  # an unknown configuration or split
        raise DataError(
            f"{source}: cannot load configuration {config!r}, split {split!r} ({first_line(error)})"
        ) from None
