"""The study's variants: what each one changes in the optimizer, and the suite of runs a study
expands to.

A variant is a function of the shared optimizer settings and the task's format, so a variant
that cannot differ on a task (the preference loss of a task without distractors) resolves to
the same settings as another and is run once, then reported as a copy (`same_as`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmpo_ray.jobs import SuiteConfig, SuiteTask
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.tasks.format_specs import format_spec

INITIAL = "initial"  # the rows of the initial prompt, which every variant starts from


def _has_rejected(task_format: str) -> bool:
    # Only rejected answers (distractors, preference pairs) give the preference loss a term.
    return format_spec(task_format).has_rejected_answers


def _paper(base: OptimizerConfig, task_format: str) -> dict:
    # The paper's BBH runs use the preference loss over the distractors.
    return {"objective": "preference" if _has_rejected(task_format) else "ce"}


def _with_objective(objective: str) -> Callable[[OptimizerConfig, str], dict]:
    def settings(base: OptimizerConfig, task_format: str) -> dict:
        return {"objective": objective if _has_rejected(task_format) else "ce"}

    return settings


@dataclass(frozen=True)
class Variant:
    description: str
    settings: Callable[[OptimizerConfig, str], dict]  # (base, task format) -> changed fields


VARIANTS: dict[str, Variant] = {
    "full": Variant(
        "full PMPO: hardest cases, masking, preference loss where a task has distractors",
        _paper,
    ),
    "no_masking": Variant(
        "no masking (the rewriter is told none was run)",
        lambda base, fmt: {**_paper(base, fmt), "use_masking": False},
    ),
    "random_cases": Variant(
        "random training examples instead of the hardest",
        lambda base, fmt: {**_paper(base, fmt), "case_selection": "random"},
    ),
    "no_preference": Variant(
        "no preference loss: cross-entropy of the gold answer only", _with_objective("ce")
    ),
    "ce_plus_preference": Variant(
        "cross-entropy plus the preference loss", _with_objective("ce_plus_preference")
    ),
    "ape": Variant(
        "APE-style baseline: instructions induced from random training examples, lowest loss kept",
        lambda base, fmt: {**_paper(base, fmt), "proposal": "ape", "case_selection": "random"},
    ),
    "random_rewrites": Variant(
        "paraphrases of the prompt with no example and no analysis, lowest loss kept",
        lambda base, fmt: {**_paper(base, fmt), "proposal": "paraphrase"},
    ),
}


@dataclass(frozen=True)
class StudyRun:
    """One (task, variant, seed) of the study; `same_as` names the variant whose run it is
    when the two resolve to the same settings (then `run_name` is that run's)."""

    task: str
    variant: str
    seed: int
    run_name: str
    same_as: str | None


def run_name(task: str, variant: str, seed: int) -> str:
    return f"{task}.{variant}.s{seed}"


def variant_optimizer(
    base: OptimizerConfig, variant: str, task_format: str, seed: int, budget: int
) -> OptimizerConfig:
    changes = VARIANTS[variant].settings(base, task_format)
    changes.update(seed=seed, max_forward_passes=budget)
    return OptimizerConfig.model_validate({**base.model_dump(), **changes})


def expand(
    suite: SuiteConfig, variants: list[str], seeds: list[int], budget: int
) -> tuple[SuiteConfig, list[StudyRun]]:
    """The suite of every distinct run (tasks named TASK.VARIANT.sSEED; per task, seed by seed,
    variant by variant), and every study cell with the run that answers it."""
    entries: list[SuiteTask] = []
    plan: list[StudyRun] = []
    for entry in suite.tasks:
        base = suite.optimizer_for(entry)
        task = entry.task.name
        for seed in seeds:
            ran: dict[OptimizerConfig, str] = {}  # settings -> the variant that ran them
            for variant in variants:
                optimizer = variant_optimizer(base, variant, entry.task.format, seed, budget)
                first = ran.setdefault(optimizer, variant)
                plan.append(
                    StudyRun(
                        task,
                        variant,
                        seed,
                        run_name(task, first, seed),
                        None if first == variant else first,
                    )
                )
                if first == variant:
                    task_config = entry.task.model_copy(
                        update={"name": run_name(task, variant, seed)}
                    )
                    entries.append(SuiteTask(task=task_config, optimizer=optimizer))
    return suite.model_copy(update={"tasks": entries}), plan
