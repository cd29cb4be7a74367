"""A new backend is one file plus its registration in engines/registry.py: a throwaway backend
is written into a copy of the package, registered there (its import and its `BACKENDS` entry,
nothing else changed), and then validated, opened, scored and asked to generate in a fresh
process. Should the contract ever need another file touched, this fails."""

import difflib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "pmpo_ray"

# A tiny deterministic engine, no model: every continuation token costs `logprob_per_token`,
# every sample says "toy echo" and the prompt's length.
TOY_ENGINE = '''
"""toy backend: constant log-probabilities, generations that echo the prompt's length."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from pmpo_ray.config import EngineSettings, PromptFormat
from pmpo_ray.engines.prepared_calls import PreparedEngine
from pmpo_ray.engines.scoring import TokenScores
from pmpo_ray.engines.simulated_engine import WordTokenizer


class ToyConfig(EngineSettings):
    backend: Literal["toy"] = Field("toy", description="A throwaway test backend.")
    logprob_per_token: float = Field(-0.25, lt=0, description="Every token's logprob.")

    @property
    def loads_model(self) -> bool:
        return False


class ToyEngine(PreparedEngine):
    config_class = ToyConfig
    model_path = "toy (no model)"

    def __init__(self, config: ToyConfig, prompt_format: PromptFormat | None = None):
        super().__init__(config, prompt_format)
        self.tokenizer = WordTokenizer()

    def token_scores(self, batch, share):
        value, scores = self.config.logprob_per_token, []
        for request in batch:
            n = request.n_continuation
            scores.append(TokenScores(np.full(n, value), np.ones(n, bool), len(request.token_ids)))
        return scores

    def generate_samples(self, prepared):
        rows = zip(prepared.token_ids, prepared.table.to_pylist())
        return [[(f"toy echo {len(ids)}", 3, "stop")] * row["n"] for ids, row in rows]
'''

REGISTRATION = {
    # after this line of registry.py: the line that registers the toy backend there
    "from pmpo_ray.engines.simulated_engine import SimulatedEngine\n": (
        "from pmpo_ray.engines.toy_engine import ToyEngine\n"
    ),
    '    "simulated": SimulatedEngine,\n': '    "toy": ToyEngine,\n',
}

# Run in the copy: everything a caller does with a backend, by its name only.
CHECKS = """
import sys

import pydantic
import pmpo_ray
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.pool_plan import pool_needs
from pmpo_ray.engines.registry import BACKENDS, PoolConfig
from pmpo_ray.engines.replicas import actor_options
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example

assert pmpo_ray.__file__.startswith(sys.argv[1]), pmpo_ray.__file__  # the copy
pool = PoolConfig.model_validate({"engine": {"backend": "toy", "logprob_per_token": -0.5}})
assert type(pool.engine).__name__ == "ToyConfig" and "toy" in BACKENDS
try:
    PoolConfig.model_validate({"engine": {"backend": "toy", "logprob_per_tokn": -0.5}})
    raise AssertionError("a misspelt field of the toy backend was accepted")
except pydantic.ValidationError as error:
    assert "logprob_per_tokn" in str(error), error
# pool planning and replica options from the settings' defaults
assert [need.memory_parts for need in pool_needs("scorer", pool, None)] == [(("process", 2**29),)]
assert actor_options(pool.engine, pool.replicas)["num_gpus"] == 0

examples = [Example("1", "Is ten even?", "Yes it is"), Example("2", "Is three even?", "No")]
requests = score_requests(
    [("p", "Answer briefly.")], examples, task_id="t", kind="candidate", role="system"
)
with open_engines(pool) as client:
    scored = client.score(requests)
    assert scored.column("n_tokens").to_pylist() == [3, 1]
    assert scored.column("logprob_sum").to_pylist() == [-1.5, -0.5]
    generated = client.generate(generate_requests([("Be brief.", "Hi there")], task_id="t", n=2))
    assert generated.num_rows == 2
    assert all(text.startswith("toy echo ") for text in generated.column("text").to_pylist())
    assert client.count_tokens(["one two three", ""]) == [3, 0]
print("toy backend ok")
"""


def register(registry: str) -> str:
    for anchor, line in REGISTRATION.items():
        assert registry.count(anchor) == 1, f"registry.py no longer has {anchor!r}"
        registry = registry.replace(anchor, anchor + line)
    return registry


def test_a_backend_is_one_file_and_its_registration(tmp_path):
    copy = tmp_path / "pmpo_ray"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "engines" / "toy_engine.py").write_text(TOY_ENGINE)
    registry = copy / "engines" / "registry.py"
    before = registry.read_text()
    registry.write_text(register(before))
    changed = [
        line
        for line in difflib.ndiff(before.splitlines(), registry.read_text().splitlines())
        if line.startswith(("+ ", "- "))
    ]
    assert changed == [f"+ {line.rstrip()}" for line in REGISTRATION.values()]
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECKS), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "toy backend ok" in run.stdout
