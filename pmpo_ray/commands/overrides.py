"""`--set KEY=VALUE`: dotted config overrides on the command line (suite and study jobs)."""

from __future__ import annotations

import argparse

import yaml


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value by dotted key, e.g. {example}",
    )


def set_overrides(items: list[str]) -> tuple[dict[str, object], dict[str, str]]:
    """The `--set` values as (dotted key -> value, dotted key -> the flag that set it), so
    config errors name the flag, not the YAML file."""
    overrides, flags = {}, {}
    for item in items:
        key, value = parse_override(item)
        overrides[key], flags[key] = value, f"--set {key}"
    return overrides, flags


def parse_override(item: str) -> tuple[str, object]:
    """'a.b=2' -> ('a.b', 2): the value is read as YAML, so numbers and lists keep their type."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. scorer.replicas.num_replicas=2")
    return key.strip(), yaml.safe_load(value)
