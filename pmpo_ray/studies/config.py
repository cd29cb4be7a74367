"""An ablation study: PMPO variants over the same suite, seeds and forward-pass budget."""

from __future__ import annotations

from pydantic import Field, field_validator

from pmpo_ray.config import FrozenConfig
from pmpo_ray.jobs import SuiteConfig
from pmpo_ray.studies.variants import VARIANTS


class StudyConfig(FrozenConfig):
    suite: SuiteConfig = Field(
        ...,
        description="The tasks, engines, held-out evaluation and base optimizer settings every "
        "variant shares; its `iterations` caps each run, the budget ends it.",
    )
    variants: list[str] = Field(
        default_factory=lambda: list(VARIANTS),
        min_length=2,
        description=f"Variants to compare, first as the reference; known: {', '.join(VARIANTS)}.",
    )
    seeds: list[int] = Field(
        [0, 1], min_length=2, description="Optimizer seeds each variant runs with (at least 2)."
    )
    forward_pass_budget: int = Field(
        ...,
        ge=1,
        description="Scored rows each run (task x variant x seed) may spend; every variant ends "
        "as near it as its iterations allow.",
    )

    @field_validator("variants")
    @classmethod
    def known_variants(cls, variants: list[str]) -> list[str]:
        unknown = [name for name in variants if name not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        if len(set(variants)) != len(variants):
            raise ValueError(f"variants repeat: {variants}")
        return variants

    @field_validator("seeds")
    @classmethod
    def distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat: {seeds}")
        return seeds
