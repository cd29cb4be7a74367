"""How held-out evaluation runs: which baselines, how many examples, how long an answer."""

from __future__ import annotations

from pydantic import Field

from pmpo_ray.config import FrozenConfig

STEP_BY_STEP = "Let's think step by step."


class EvaluationConfig(FrozenConfig):
    baselines: dict[str, str] = Field(
        default_factory=lambda: {"no_instruction": "", "step_by_step": STEP_BY_STEP},
        description="Prompts evaluated beside the initial and optimized ones, by name; the "
        "empty prompt means no instruction at all.",
    )
    max_examples: int | None = Field(
        None,
        ge=1,
        description="Evaluate on the first N held-out examples only (a cheaper, noisier "
        "estimate); None uses the whole held-out split.",
    )
    max_answer_tokens: int = Field(
        96, ge=1, description="Generation budget of one greedy answer for accuracy."
    )
    accuracy: bool = Field(
        True,
        description="Measure accuracy by greedy generation and answer extraction (not for "
        "preference tasks, which report pairwise accuracy from log-probabilities).",
    )
