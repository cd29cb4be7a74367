"""`pmpo score`: how well does this prompt explain these answers?

Scores every (input, target) example under one prompt and writes one row per example with its
cross-entropy. It is also the quickest check that two backends agree on a model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pmpo_ray.config import load_config
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.registry import BACKENDS
from pmpo_ray.engines.scoring import check_rows_fit
from pmpo_ray.jobs import ScoreJobConfig
from pmpo_ray.requests import score_requests
from pmpo_ray.store import atomic_write_parquet, check_writable, read_user_text, write_or_keep
from pmpo_ray.tasks.example_files import load_examples

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = [
    "example_id",
    "input",
    "target",
    "logprob_sum",
    "n_tokens",
    "ce_mean",
    "is_greedy",
]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("score", help="score examples' targets under a prompt")
    parser.add_argument("--prompt", required=True, help="prompt text, or a file holding it")
    parser.add_argument(
        "--data", required=True, type=Path, help=".jsonl {input,target} or BBH .json"
    )
    parser.add_argument("--out", required=True, type=Path, help="output .parquet file")
    parser.add_argument("--model", help="'default', a local HF folder, or a cached hub id")
    parser.add_argument("--backend", choices=list(BACKENDS), help="scoring engine (default vllm)")
    parser.add_argument("--config", type=Path, help="YAML ScoreJobConfig; flags override it")
    parser.add_argument("--role", choices=["system", "user"], help="where the prompt goes")
    parser.add_argument(
        "--truncate-left",
        action="store_true",
        default=None,
        help="drop context tokens from the left instead of failing on long rows",
    )
    parser.add_argument(
        "--no-prefix-sharing",
        dest="prefix_sharing",
        action="store_false",
        default=None,
        help="score every row from scratch instead of computing a shared prompt prefix once "
        "(same numbers; for comparison and debugging)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        help="score through this many Ray engine replicas instead of in-process",
    )
    parser.set_defaults(run=run)


# Each flag's dotted config key, so flag values override the YAML and errors name the flag.
FLAG_KEYS = {
    "backend": "scorer.engine.backend",
    "model": "scorer.engine.model.name",
    "role": "prompt_format.role",
    "truncate_left": "prompt_format.truncate_left",
    "replicas": "scorer.replicas.num_replicas",
    "prefix_sharing": "scorer.engine.prefix_sharing",
}
FLAG_NAMES = {"prefix_sharing": "--no-prefix-sharing"}


def scoring_config(args: argparse.Namespace) -> ScoreJobConfig:
    overrides = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()}
    flags = {
        key: FLAG_NAMES.get(dest, "--" + dest.replace("_", "-")) for dest, key in FLAG_KEYS.items()
    }
    return load_config(ScoreJobConfig, args.config, flags=flags, **overrides)


def read_prompt(value: str) -> str:
    """--prompt: the text of the file it names, else the text itself."""
    path = Path(value).expanduser()
    try:
        names_a_file = path.is_file()
    except (OSError, ValueError):  # too long to be a file name, or a NUL byte: it is text
        names_a_file = False
    if not names_a_file:
        return value
    return read_user_text(path, f"--prompt {path}").strip()


def run(args: argparse.Namespace) -> int:

    config = scoring_config(args)
    prompt = read_prompt(args.prompt)
    examples = load_examples(args.data)
    check_writable(args.out)
    requests = score_requests(
        [("prompt", prompt)],
        examples,
        task_id=args.data.stem,
        kind="adhoc",
        role=config.prompt_format.role,
    )

    check_rows_fit([requests], config.scorer.engine, config.prompt_format)  # before it loads
    with open_engines(
        config.scorer,
        prompt_format=config.prompt_format,
        on_ray=args.replicas is not None,
        ray=config.ray,
    ) as client:
        scored = client.score(requests)
    table = per_example_table(scored, examples)
    write_or_keep(args.out, lambda path: atomic_write_parquet(table, path), what="scores")
    print_summary(table, args.out)
    return 0


def per_example_table(scored, examples):
    import pyarrow as pa
    import pyarrow.compute as pc

    ce_mean = pc.divide(
        pc.negate(scored.column("logprob_sum")), pc.cast(scored.column("n_tokens"), pa.float64())
    )
    return pa.table(
        {
            "example_id": scored.column("example_id"),
            "input": [e.input for e in examples],
            "target": [e.target for e in examples],
            "logprob_sum": scored.column("logprob_sum"),
            "n_tokens": scored.column("n_tokens"),
            "ce_mean": ce_mean,
            "is_greedy": scored.column("is_greedy"),
        }
    )


def print_summary(table, out: Path) -> None:
    import pyarrow.compute as pc

    print(f"{'example':>8}  {'tokens':>6}  {'ce/token':>9}  greedy")
    for row in table.select(["example_id", "n_tokens", "ce_mean", "is_greedy"]).to_pylist():
        print(
            f"{row['example_id']:>8}  {row['n_tokens']:>6}  {row['ce_mean']:>9.4f}  {row['is_greedy']}"
        )
    mean = pc.mean(table.column("ce_mean")).as_py()
    print(f"mean cross-entropy per token over {table.num_rows} examples: {mean:.4f} nats")
    print(f"wrote {out}")
