"""The record of each JSON file a run folder holds: one class per file, which the writer dumps
and the reader validates, so a file reads back as exactly what was written.

Readers are strict (JSON types as written, no coercion, no unknown keys, no defaults filling a
missing field), and result.json carries a format marker: a task folder written by another
pmpo-ray version fails in one line instead of reading half right. evaluation.json's record is
`records.Evaluation` (reports read it as it is); history.parquet is an Arrow table
(write.HISTORY_SCHEMA), and config.yaml the task's own `OptimizeJobConfig`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from pydantic_core import PydanticCustomError

from pmpo_ray.pmpo.records import (
    IterationRecord,
    OptimizationResult,
    Work,
    format_loss_share,
    rejection_counts,
)
from pmpo_ray.pmpo.select import Candidate

FORMAT_KEY = "run_folder_format"
# Bump when a file's record changes shape: readers refuse a folder with another value, so an
# old folder is named as such rather than misread. 2: result.json's format_loss_share.
FORMAT = 2


class FileRecord(BaseModel):
    """Base of a run folder file's record: frozen, read strictly, written under its file's
    key names (an attribute whose name differs from its key has that key as its alias)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", serialize_by_alias=True)


def every_field(cls: type) -> BeforeValidator:
    """A dataclass read from a file must hold every field: its defaults start a count in
    memory, they must not stand in for what a file lacks."""
    names = [f.name for f in fields(cls)]

    def check(value):
        missing = [name for name in names if name not in value] if isinstance(value, dict) else []
        if missing:
            raise PydanticCustomError("missing", "{names} missing", {"names": ", ".join(missing)})
        return value

    return BeforeValidator(check)


WrittenWork = Annotated[Work, every_field(Work)]


class Losses(FileRecord):
    """The training losses of a task's initial and best prompts."""

    initial_loss: float = Field(description="The initial prompt's training loss.")
    best_loss: float = Field(description="The best prompt's training loss.")


class Outcome(Losses):
    """What result.json and suite.json both say of a task's optimization."""

    iterations: int = Field(description="Iterations run.")
    stop_reason: str = Field(description="Why the optimization stopped.")
    work: WrittenWork = Field(description="The optimization's work and wall time.")

    @staticmethod
    def of_result(result: OptimizationResult) -> dict:
        return {
            "initial_loss": result.initial.loss,
            "best_loss": result.best.loss,
            "iterations": len(result.history),
            "stop_reason": result.stop_reason,
            "work": result.work,
        }


class ResultFile(Outcome):
    """result.json: the optimization's outcome; its presence marks a task folder."""

    run_folder_format: Literal[FORMAT] = Field(  # type: ignore[valid-type]
        description="The run-folder format this file was written in (`FORMAT`)."
    )
    task_id: str = Field(description="The task's name.")
    seed: int = Field(description="The optimizer's seed.")
    best_candidate: str = Field(description="The best prompt's candidate id.")
    rejected_rewrites: dict[str, int] = Field(
        description="Rewrites vetting rejected, by reason, most frequent first."
    )
    format_loss_share: float | None = Field(
        description="Share of the generated rewrites (scored or rejected) that vetting rejected "
        "for their format: reasons no_prompt_tag (no complete <prompt></prompt> pair, e.g. cut "
        "off by max_rewrite_tokens) and empty (pmpo/records.py FORMAT_REASONS); None when no "
        "rewrite was generated."
    )
    lineage: dict[str, str | None] = Field(description="Candidate id -> its parent's id.")
    skipped_rows: dict[str, int] = Field(
        description="Data rows left out by `invalid_rows: skip`, by reason."
    )

    @classmethod
    def of(cls, result: OptimizationResult) -> ResultFile:
        return cls(
            run_folder_format=FORMAT,
            task_id=result.task_id,
            seed=result.seed,
            best_candidate=result.best.candidate_id,
            rejected_rewrites=rejection_counts(result.history),
            format_loss_share=format_loss_share(result.history),
            lineage=result.lineage,
            skipped_rows=result.skipped_rows,
            **Outcome.of_result(result),
        )


class SuiteTaskSummary(Outcome):
    """One task's entry of suite.json (task id -> entry), for people and scripts."""

    best_prompt: str = Field(description="The best prompt's text.")

    @classmethod
    def of(cls, result: OptimizationResult) -> SuiteTaskSummary:
        return cls(best_prompt=result.best.text, **Outcome.of_result(result))


class RoundLine(BaseModel):
    """One line of rounds.jsonl (suite/checkpoint_writer.py writes it): the round's number and
    wall time are checked; the stage timings, counts and pool fractions beside them vary with
    the pools, and are kept as written."""

    model_config = ConfigDict(frozen=True, strict=True, extra="allow")

    round: int = Field(description="The round's number, from 1.")
    wall_seconds: float = Field(description="Wall time since the previous round ended.")


# suite.json: task id -> summary, in the suite's order.
SUITE_SUMMARY = TypeAdapter(dict[str, SuiteTaskSummary])
# best_prompt.json: the best candidate as the optimizer holds it.
BEST_PROMPT = TypeAdapter(Candidate)
# iterations.json: every iteration's record, for people (nothing reads it back).
ITERATIONS = TypeAdapter(tuple[IterationRecord, ...])
