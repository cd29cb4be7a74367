"""One spec per task format: what its examples carry, and how it is optimized and measured.

Packages above tasks/ ask these specs instead of comparing format names: the loss takes its
default objective from here, held-out evaluation and the reports which accuracies a task
has, the study which variants can differ on it. tasks/ sits below those packages, so a spec
names an objective or an answer check by its key, which they map to their own functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

TaskFormat = Literal["supervised", "multiple_choice", "preference"]

# How a format's held-out answers are checked:
# - generated: the greedy answer, read by the task's answer_match (evaluation/extractors.py);
# - option: the same, matched among the options unless answer_match says otherwise, plus
#   option accuracy from the scoring pass (evaluation/option_accuracy.py);
# - pairwise: no answer is generated; the share of rejected answers scored below the chosen
#   one (pmpo/loss.py, pairwise_accuracy) is the measure.
AnswerCheck = Literal["generated", "option", "pairwise"]
# The objective `objective: auto` means (pmpo/loss.py, resolve_objective).
DefaultObjective = Literal["ce", "preference"]


@dataclass(frozen=True)
class FormatSpec:
    name: TaskFormat
    has_options: bool  # a question with options to choose among
    has_rejected_answers: bool  # examples carry rejected answers: the preference loss applies
    default_objective: DefaultObjective
    answer_check: AnswerCheck
    description: str  # the fields of one example, as the task config's help shows them

    @property
    def generates_answers(self) -> bool:
        """Whether held-out evaluation answers greedily and grades the answers."""
        return self.answer_check != "pairwise"


_SPECS = (
    FormatSpec(
        "supervised",
        has_options=False,
        has_rejected_answers=False,
        default_objective="ce",
        answer_check="generated",
        description="input -> target",
    ),
    FormatSpec(
        "multiple_choice",
        has_options=True,
        has_rejected_answers=True,  # the distractors
        # Not the paper's preference loss: see resolve_objective in pmpo/loss.py for why.
        default_objective="ce",
        answer_check="option",
        description="a question with options, the distractors kept as rejected answers",
    ),
    FormatSpec(
        "preference",
        has_options=False,  # rejected answers are not options to choose among
        has_rejected_answers=True,
        default_objective="preference",
        answer_check="pairwise",
        description="instruction, chosen, rejected",
    ),
)
FORMAT_SPECS: Mapping[str, FormatSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})


def format_spec(name: str) -> FormatSpec:
    """The spec of a format a config named (validated, so one of FORMAT_SPECS)."""
    try:
        return FORMAT_SPECS[name]
    except KeyError:
        known = ", ".join(FORMAT_SPECS)
        raise ValueError(f"unknown task format {name!r}; known: {known}") from None


def known_format_spec(value: object) -> FormatSpec | None:
    """The spec of a format name read back from a file; None for a missing or unknown one (from
    another version, or edited by hand), which callers treat as a format with no extras."""
    return FORMAT_SPECS.get(value) if isinstance(value, str) else None


def formats_help() -> str:
    """Each format and its fields, for the task config's `format` help."""
    return "; ".join(f"{spec.name}: {spec.description}" for spec in _SPECS) + "."
