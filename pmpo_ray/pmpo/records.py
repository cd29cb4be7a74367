"""What an optimization leaves behind: every candidate, masking result, rejection and the work
done, frozen.

Plain dataclasses of plain values, so a run can be written as Parquet/JSON and read back
without pickle, and compared field by field across runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from pmpo_ray.pmpo.select import Candidate


@dataclass(frozen=True)
class Work:
    """Work done; forward passes count scored rows (one teacher-forced pass each)."""

    forward_passes: int = 0
    tokens_scored: int = 0
    generation_requests: int = 0
    tokens_generated: int = 0
    wall_seconds: float = 0.0

    def __add__(self, other: "Work") -> "Work":
        return Work(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


@dataclass(frozen=True)
class MaskingResult:
    """Mask-guided importance of one prompt's units."""

    candidate_id: str
    method: str  # "model" | "sentences"
    rejected_reason: str  # why the model's segmentation was not used ("" if it was)
    units: tuple[str, ...]
    deltas: tuple[float, ...]
    text: str  # what the rewriter reads


@dataclass(frozen=True)
class RejectedRewrite:
    parent_id: str
    example_id: str
    reason: str
    output: str


@dataclass(frozen=True)
class IterationRecord:
    iteration: int
    parent_ids: tuple[str, ...]
    hard_cases: dict[str, tuple[str, ...]]  # parent id -> example ids, hardest first
    masking_results: tuple[MaskingResult, ...]
    candidates: tuple[Candidate, ...]  # the incumbents plus every scored rewrite
    hard_case_of: dict[str, str]  # rewrite id -> example id it was rewritten from
    rejected: tuple[RejectedRewrite, ...]
    population: tuple[str, ...]  # candidate ids kept after this iteration, best first
    best_loss: float
    improved: bool
    work: Work


@dataclass(frozen=True)
class OptimizationResult:
    task_id: str
    seed: int
    initial: Candidate
    best: Candidate
    population: tuple[Candidate, ...]
    history: tuple[IterationRecord, ...]
    lineage: dict[str, str | None] = field(default_factory=dict)  # candidate -> parent
    work: Work = field(default_factory=Work)
    stop_reason: str = ""
    skipped_rows: dict[str, int] = field(default_factory=dict)  # invalid data rows, by reason


# The rejection reasons (pmpo/rewrite.py) of an output without a usable <prompt> pair: the
# rewrite is lost to its format (cut off by the token budget, no tag, an empty pair).
FORMAT_REASONS = ("no_prompt_tag", "empty")


def format_loss_share(history: "tuple[IterationRecord, ...]") -> float | None:
    """The share of generated rewrites that vetting rejected for their format (FORMAT_REASONS),
    of all rewrites generated: those scored plus those rejected for any reason. None when the
    run generated no rewrite."""
    generated = lost = 0
    for record in history:
        generated += len(record.hard_case_of) + len(record.rejected)
        lost += sum(rejected.reason in FORMAT_REASONS for rejected in record.rejected)
    return lost / generated if generated else None


def rejection_counts(history: "tuple[IterationRecord, ...]") -> dict[str, int]:
    """How many rewrites vetting rejected, by reason (pmpo/rewrite.py), most frequent first."""
    counts: dict[str, int] = {}
    for record in history:
        for rejected in record.rejected:
            counts[rejected.reason] = counts.get(rejected.reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
