"""`pmpo model`: materialize the built-in default model (or check a named one) and print its folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from pmpo_ray.config import ModelConfig
from pmpo_ray.engines.models import resolve_model_path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("model", help="provision a model and print its folder")
    parser.add_argument("--model", default="default", help="'default', a folder, or a hub id")
    parser.add_argument("--cache-dir", type=Path, help="where the default model is materialized")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(resolve_model_path(ModelConfig(name=args.model, cache_dir=args.cache_dir)))
    return 0
