"""Faults at the engine boundary for tests of what a failure leaves behind: a scripted engine
that breaks on a chosen scoring call, a small task and a small two-task suite, a scoring table
for replica pools, and a folder's bytes."""

from __future__ import annotations

from pathlib import Path

from pmpo_ray.requests import score_requests
from pmpo_ray.tasks.example import Example
from tests.fakes import FakeEngine, scripted_rewrites

# One small built-in task and one short round, for commands that must fail before the work.
SMALL_TASK = {
    "name": "navigate",
    "data": "builtin:bbh/navigate.json",
    "format": "multiple_choice",
    "initial_prompt": "Answer.",
    "max_train": 4,
}
ONE_ROUND = {"iterations": 1, "hard_cases": 1, "rewrites_per_case": 1}


class EngineDown(RuntimeError):
    pass


class FailingEngine(FakeEngine):
    """The scripted engine, raising on its `fail_on`-th scoring call (1-based; None: never).
    Every call, the failing one included, is counted in `score_calls`."""

    def __init__(self, fail_on: int | None = None, respond=scripted_rewrites):
        super().__init__(respond)
        self.fail_on = fail_on

    def score(self, requests, with_token_logprobs=False):
        if self.fail_on is not None and len(self.score_calls) + 1 == self.fail_on:
            self.score_calls.append(requests.num_rows)
            raise EngineDown(f"engine lost on scoring call {self.fail_on}")
        return super().score(requests, with_token_logprobs)


def suite_config(
    *, seed: int = 0, iterations: int = 2, data: str = "builtin:bbh/navigate.json"
) -> dict:
    """Two small tasks: navigate (answers generated for accuracy) and preference pairs (no
    generation at evaluation)."""
    return {
        "name": "faults",
        "optimizer": {
            "iterations": iterations,
            "hard_cases": 1,
            "rewrites_per_case": 2,
            "seed": seed,
        },
        "tasks": [
            {
                "task": {
                    "name": "navigate",
                    "data": data,
                    "format": "multiple_choice",
                    "initial_prompt": "Answer.",
                    "max_train": 4,
                }
            },
            {
                "task": {
                    "name": "pairs",
                    "data": "builtin:alpaca_eval/pairs_short.jsonl",
                    "format": "preference",
                    "initial_prompt": "Be helpful.",
                    "max_train": 4,
                }
            },
        ],
        "evaluation": {"max_examples": 4},
    }


def scoring_table(n_examples=24):
    """Two prompts × `n_examples` scoring rows of task "t", for jobs on fake replica pools."""
    examples = [
        Example(str(i), f"question {i}", "an answer " * (1 + i % 4)) for i in range(n_examples)
    ]
    return candidate_requests([("a", "Think."), ("b", "Think carefully.")], examples)


def candidate_requests(prompts, examples):
    """Scoring rows of task "t": each (candidate id, prompt) with every example, as a system
    prompt."""
    return score_requests(prompts, examples, task_id="t", kind="candidate", role="system")


def folder_bytes(folder: Path, skip: str | None = None) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes; `skip` leaves out one
    top-level entry (e.g. a staging folder)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] != skip
    }


def finished_task_run(folder: Path) -> Path:
    """A `pmpo optimize` run folder of SMALL_TASK (one round, the scripted engine) at `folder`."""
    from pmpo_ray.jobs import OptimizeJobConfig
    from pmpo_ray.pmpo.rounds import run_rounds
    from pmpo_ray.pmpo.task_run import TaskRun
    from pmpo_ray.run_folder.write import write_task_run
    from pmpo_ray.tasks.task import load_task

    config = OptimizeJobConfig.model_validate({"task": SMALL_TASK, "optimizer": ONE_ROUND})
    engine = FakeEngine(scripted_rewrites)
    run = TaskRun(
        load_task(config.task), config.optimizer, engine.count_tokens, config.prompt_format
    )
    [result] = run_rounds([run], rewriter=engine, scorer=engine)
    write_task_run(result, folder, config)
    return folder


# Every module that opens engines by name (imports are at module level, so each holds its own
# reference): a test that must fail before engines start replaces all of them.
ENGINE_OPENERS = (
    "pmpo_ray.engines.client",
    "pmpo_ray.api",
    "pmpo_ray.commands.score",
    "pmpo_ray.suite.run",
)


def replace_open_engines(monkeypatch, replacement) -> None:
    for module in ENGINE_OPENERS:
        monkeypatch.setattr(f"{module}.open_engines", replacement)
