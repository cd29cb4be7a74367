"""A run folder as frozen records: what evaluation and reports read, whether it came from the
files (read.py) or straight from a finished optimization (from_results.py). `Evaluation` is
evaluation.json's own record (files.py holds the other files'); `TaskFolder.of` puts a task
folder together from its files' records, the same way for both sources."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from pmpo_ray.jobs import OptimizeJobConfig
from pmpo_ray.run_folder.files import FileRecord, Losses, ResultFile
from pmpo_ray.run_folder.layout import CONFIG, HISTORY, RESULT


@dataclass(frozen=True)
class Point:
    """One scored candidate: `iteration` 0 is the initial prompt."""

    iteration: int
    loss: float
    role: str  # initial | parent | rewrite


@dataclass(frozen=True)
class WorkTotals:
    forward_passes: int
    tokens_scored: int
    tokens_generated: int
    seconds: float


class Difference(FileRecord):
    """A figure's paired change from the initial prompt on the same held-out examples."""

    change: float = Field(description="This prompt's figure minus the initial prompt's.")
    ci95: tuple[float, float] = Field(
        description="95% paired bootstrap interval of the change (evaluation/intervals.py); "
        "one that holds 0 is within noise."
    )


class PromptScore(FileRecord):
    """One prompt's entry of evaluation.json; an accuracy is None where it was not measured
    (nothing generated, no pairs, no options)."""

    name: str = Field(description="initial, optimized, or a baseline's name.")
    text: str = Field(description="The prompt.")
    heldout_ce: float = Field(description="Mean held-out cross-entropy, nats per token.")
    heldout_loss: float = Field(description="Mean held-out loss under the task's objective.")
    pairwise_accuracy: float | None = Field(
        description="Share of rejected answers ranked below the reference (preference tasks)."
    )
    option_accuracy: float | None = Field(
        description="Multiple choice: the option scored highest is right (lm-eval's acc)."
    )
    option_accuracy_norm: float | None = Field(
        description="The same per character of the option (lm-eval's acc_norm)."
    )
    forward_passes: int = Field(description="Scored rows.")
    tokens_scored: int = Field(description="Input tokens scored.")
    accuracy: float | None = Field(description="Greedy answers graded correct.")
    tokens_generated: int = Field(description="Tokens of the greedy answers.")
    seconds: float = Field(description="Its share of the task's evaluation time, by tokens.")
    from_cache: bool = Field(
        description="Read from the evaluation cache (evaluation/cache.py), not scored now; "
        "its work figures are those of the evaluation that filled the cache."
    )
    ci95: dict[str, tuple[float, float]] = Field(
        description="Figure name -> its 95% bootstrap interval over held-out examples."
    )
    vs_initial: dict[str, Difference] = Field(
        description="Figure name -> its paired change from the initial prompt ({} for it)."
    )
    choices: dict[str, float] | None = Field(
        description="Multiple choice: option label -> share of held-out examples on which it "
        "scored highest (ties choose none)."
    )

    @property
    def work(self) -> WorkTotals:
        return WorkTotals(
            self.forward_passes, self.tokens_scored, self.tokens_generated, self.seconds
        )


class Counterfactual(FileRecord):
    """What choosing among the same candidates by generated answers would have cost."""

    candidates_scored: int = Field(description="Distinct prompts scored in training.")
    train_examples: int = Field(description="Training examples.")
    mean_answer_tokens: float = Field(description="Tokens per answer assumed.")
    length_from: str = Field(
        alias="answer_length_from",
        description='What the answer length was measured on ("answers" or "references").',
    )
    generated_tokens: int = Field(description="Tokens that choice would have generated.")
    loss_based_tokens_generated: int = Field(description="Tokens the optimization generated.")


class Evaluation(FileRecord):
    """A task's evaluation.json (evaluation/evaluate_run.py fills it in)."""

    task_id: str = Field(description="The task's name.")
    format: str = Field(description="The task's format.")
    answer_match: str = Field(description="How greedy answers are graded.")
    n_train: int = Field(description="Training examples.")
    n_heldout: int = Field(description="Held-out examples evaluated.")
    prompts: tuple[PromptScore, ...] = Field(
        description="Initial, optimized, then baselines (read.py puts them in that order)."
    )
    gold_shares: dict[str, float] | None = Field(
        description="Multiple choice: option label -> share of held-out examples it is gold for."
    )
    training: Losses = Field(description="The losses the optimization reported.")
    counterfactual: Counterfactual = Field(
        alias="generation_counterfactual", description="The generation-based choice's cost."
    )
    seconds: float = Field(description="The task's evaluation wall time.")
    basis: dict[str, Any] = Field(
        description="What it measured (evaluation/resume.py): kept while this holds."
    )

    @field_validator("prompts")
    @classmethod
    def initial_and_optimized(cls, prompts: tuple[PromptScore, ...]):
        names = {prompt.name for prompt in prompts}
        for required in ("initial", "optimized"):
            if required not in names:
                raise PydanticCustomError("prompts", "no entry named '{name}'", {"name": required})
        return prompts

    def prompt(self, name: str) -> PromptScore | None:
        return next((p for p in self.prompts if p.name == name), None)


@dataclass(frozen=True)
class TaskFolder:
    """One task's optimization: its resolved config, prompts, losses, cost and candidates."""

    path: Path
    config: OptimizeJobConfig  # this task's own config.yaml
    task_id: str
    seed: int
    initial_prompt: str
    best_prompt: str
    initial_loss: float
    best_loss: float
    iterations: int
    stop_reason: str
    training_work: WorkTotals
    points: tuple[Point, ...]  # every scored candidate, in history order
    candidates_scored: int  # distinct prompts scored on the training split
    evaluation: Evaluation | None  # None until `pmpo evaluate` has run
    rejected_rewrites: dict[str, int]  # rewrites vetting rejected, by reason
    format_loss_share: float | None  # of generated rewrites, lost to format (ResultFile's)

    @classmethod
    def of(
        cls,
        path: Path,
        config: OptimizeJobConfig,
        result: ResultFile,
        history: list[dict],
        best_prompt: str,
        evaluation: Evaluation | None,
    ) -> TaskFolder:
        """The task folder at `path` from its files' records: result.json's, history.parquet's
        rows, best_prompt.json's text, evaluation.json's (None: not evaluated)."""
        if config.task.name != result.task_id:
            raise ValueError(
                f"{path / CONFIG}: config is for task {config.task.name!r}, but "
                f"{path / RESULT} is task {result.task_id!r}"
            )
        points, initial_prompt, candidates = history_points(history, path / HISTORY)
        work = result.work
        return cls(
            path=path,
            config=config,
            task_id=result.task_id,
            seed=result.seed,
            initial_prompt=initial_prompt,
            best_prompt=best_prompt,
            initial_loss=result.initial_loss,
            best_loss=result.best_loss,
            iterations=result.iterations,
            stop_reason=result.stop_reason,
            training_work=WorkTotals(
                work.forward_passes,
                work.tokens_scored,
                work.tokens_generated,
                work.wall_seconds,
            ),
            points=points,
            candidates_scored=candidates,
            evaluation=evaluation,
            rejected_rewrites=dict(result.rejected_rewrites),
            format_loss_share=result.format_loss_share,
        )


def history_points(rows: list[dict], where: Path | str) -> tuple[tuple[Point, ...], str, int]:
    """What history rows (as history.parquet holds them) say: points, initial text, count."""
    initial = [row for row in rows if row["role"] == "initial"]
    if not initial:
        raise ValueError(f"{where}: no row with role 'initial'")
    points = tuple(
        Point(row["iteration"], math.nan if row["loss"] is None else row["loss"], row["role"])
        for row in rows
    )
    return points, initial[0]["text"], len({row["candidate_id"] for row in rows})


@dataclass(frozen=True)
class RunFolder:
    """A single-task run ("task") or a suite ("suite") of task folders.

    The scorer's engine, prompt format and evaluation settings are the tasks' shared ones:
    evaluation serves every task with one engine, so the task configs must agree on them.
    """

    path: Path
    kind: str  # "suite" | "task"
    tasks: tuple[TaskFolder, ...]
    rounds: tuple[dict, ...] = ()  # rounds.jsonl lines, in order; empty for a single task

    def __post_init__(self):
        if not self.tasks:
            raise ValueError(f"{self.path}: a run folder without tasks")
        first = self.tasks[0]
        for task in self.tasks[1:]:
            for name in ("scorer", "prompt_format", "evaluation"):
                if getattr(task.config, name) != getattr(first.config, name):
                    raise ValueError(
                        f"{task.path / CONFIG}: field {name!r} differs from "
                        f"{first.path / CONFIG}; a suite's tasks share one {name}"
                    )

    @property
    def is_suite(self) -> bool:
        return self.kind == "suite"

    @property
    def engine(self):
        """The scorer's engine config: evaluation uses the same model."""
        return self.tasks[0].config.scorer.engine

    @property
    def prompt_format(self):
        return self.tasks[0].config.prompt_format

    @property
    def evaluation(self):
        return self.tasks[0].config.evaluation


def round_seconds(round_line: dict) -> float:
    """A round's wall time, as rounds.jsonl logs it (files.RoundLine)."""
    return float(round_line["wall_seconds"])
