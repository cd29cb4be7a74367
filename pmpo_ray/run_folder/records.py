"""A run folder as plain, frozen records: what evaluation and reports read, whether it came
from the files (read.py) or straight from a finished optimization (from_results.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pmpo_ray.pmpo.config import OptimizeJobConfig
from pmpo_ray.run_folder.layout import CONFIG


@dataclass(frozen=True)
class Point:
    """One scored candidate: `iteration` 0 is the initial prompt."""

    iteration: int
    loss: float
    role: str  # initial | parent | variant


@dataclass(frozen=True)
class Cost:
    forward_passes: int
    tokens_scored: int
    tokens_generated: int
    seconds: float


@dataclass(frozen=True)
class PromptScore:
    name: str
    text: str
    heldout_ce: float
    heldout_loss: float
    accuracy: float | None  # greedy answers graded; None where nothing was generated
    pairwise_accuracy: float | None
    cost: Cost
    # Read from log-probabilities (the scoring pass), multiple-choice tasks only; None for
    # other formats and for evaluation.json files written before these existed.
    option_accuracy: float | None = None
    option_accuracy_norm: float | None = None  # per character of the option


@dataclass(frozen=True)
class Counterfactual:
    candidates_scored: int
    train_examples: int
    mean_answer_tokens: float
    generated_tokens: int
    loss_based_tokens_generated: int
    length_from: str  # what the answer length was measured on ("answers", "references", "")


@dataclass(frozen=True)
class Evaluation:
    """A task's evaluation.json."""

    format: str
    answer_match: str
    n_train: int
    n_heldout: int
    prompts: tuple[PromptScore, ...]  # initial, optimized, then baselines
    counterfactual: Counterfactual | None
    seconds: float

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
    training_cost: Cost
    points: tuple[Point, ...]  # every scored candidate, in history order
    candidates_scored: int  # distinct prompts scored on the training split
    evaluation: Evaluation | None  # None until `pmpo evaluate` has run
    # Rewrites vetting rejected, by reason; empty for folders written before it was recorded.
    rejected_rewrites: dict[str, int] = field(default_factory=dict)


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
        return self.tasks[0].config.scorer

    @property
    def prompt_format(self):
        return self.tasks[0].config.prompt_format

    @property
    def evaluation(self):
        return self.tasks[0].config.evaluation


def round_seconds(round_line: dict) -> float:
    """A round's wall time; logs written before cohorts overlapped their stages lack
    `wall_seconds`, and there the stages ran one after the other."""
    if "wall_seconds" in round_line:
        return float(round_line["wall_seconds"])
    return float(round_line.get("generation_seconds", 0.0) + round_line.get("scoring_seconds", 0.0))
