"""How the PMPO loop runs: its iterations, budgets, proposals, objective and guards.

Job configs (which task, which engines) are in `pmpo_ray/jobs.py`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pmpo_ray.config import FrozenConfig
from pmpo_ray.pmpo.guards import RewriteGuards
from pmpo_ray.pmpo.loss import Objective


class OptimizerConfig(FrozenConfig):
    iterations: int = Field(20, ge=0, description="Iterations T (paper: 20).")
    patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many iterations without improvement; None never stops "
        "early (paper).",
    )
    hard_cases: int = Field(
        3, ge=1, description="k: highest-loss training examples rewritten from."
    )
    rewrites_per_case: int = Field(4, ge=1, description="n: sampled rewrites per hard case.")
    population_size: int = Field(
        1,
        ge=1,
        description="Top-K prompts kept; each is expanded every iteration. 1 = the paper's "
        "greedy rule.",
    )
    objective: Literal["auto", Objective] = Field(
        "auto",
        description="ce: cross-entropy of the reference answer; preference: -log sigmoid(beta * "
        "(s_chosen - s_rejected)) over the rejected answers (distractors); ce_plus_preference: "
        "their sum; auto: preference for preference tasks, ce otherwise (multiple choice "
        "included: chosen by the ablation study in README, where ce had the lowest held-out "
        "CE and the best generation accuracy at an equal forward-pass budget).",
    )
    reduction: Literal["mean", "sum"] = Field(
        "mean",
        description="Per-example cross-entropy: mean per token, or sum (the paper's formula).",
    )
    beta: float = Field(1.0, gt=0, description="Preference-loss temperature.")
    meta_prompt: Literal["short", "long"] = Field(
        "short", description="Rewrite meta-prompt: long for large models, short for small ones."
    )
    use_masking: bool = Field(
        True, description="Run masking: score each prompt unit masked (proposal 'pmpo' only)."
    )
    case_selection: Literal["hardest", "random"] = Field(
        "hardest",
        description="Which training examples prompts are rewritten from: the k with the highest "
        "loss (the paper), or k drawn at random each iteration (an ablation).",
    )
    proposal: Literal["pmpo", "ape", "paraphrase"] = Field(
        "pmpo",
        description="How new prompts are proposed: pmpo rewrites the prompt from a hard case and "
        "its masking result; ape induces an instruction from `demonstrations` random training "
        "examples (an APE-style baseline); paraphrase rewrites the prompt with no example and "
        "no masking (a random-search baseline). Every proposal keeps the lowest-loss prompt.",
    )
    demonstrations: int = Field(
        3, ge=1, description="Training examples shown in one ape proposal request."
    )
    max_forward_passes: int | None = Field(
        None,
        ge=1,
        description="Scored rows a run may spend: it stops where it ends nearest this number, "
        "another iteration expected to cost what the last one did; `iterations` still caps "
        "it. None: no budget. Equalizes variants that spend differently per iteration "
        "(pipelines/study.py).",
    )
    max_units: int = Field(5, ge=1, description="Most units the prompt is segmented into.")
    neutral_tolerance: float = Field(
        0.01, ge=0, description="|delta L| at or below this calls a unit neutral."
    )
    temperature: float = Field(0.9, ge=0, description="Sampling temperature of rewrites.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling of rewrites.")
    max_rewrite_tokens: int = Field(256, ge=8, description="Generation budget of one rewrite.")
    stop_at_prompt_tag: bool = Field(
        False,
        description="End a rewrite's generation at its `</prompt>` (a stop string), so no "
        "tokens are spent after it: for a rewriter that writes on after the tag. Off by "
        "default: the default model never writes the tag (it ends the prefilled prompt), so it "
        "saved nothing (pipelines/bench_rewrites.py), and a model that echoes the "
        "instruction's empty `<prompt></prompt>` first would be stopped there.",
    )
    keep_cut_rewrites: bool = Field(
        True,
        description="A rewrite that max_rewrite_tokens cut off before `</prompt>` is kept up to "
        "its last complete sentence (then vetted as any other); False rejects it as "
        "no_prompt_tag, as before. Measured (pipelines/bench_rewrites.py, the study's "
        "settings): rewrites lost to format 26.6% -> 0%, accepted per 1,000 generated tokens "
        "8.7 -> 11.9.",
    )
    max_segmentation_tokens: int = Field(
        256, ge=8, description="Generation budget of one segmentation."
    )
    max_prompt_tokens: int = Field(200, ge=1, description="Longer rewritten prompts are rejected.")
    seed: int = Field(
        0,
        description="Seeds every sampled rewrite and random choice: same seed, config and "
        "model, same run.",
    )
    guards: RewriteGuards = Field(
        default_factory=RewriteGuards,
        description="Rejects degenerate rewrites (copied example text, stated answers, option "
        "lists) before they are scored.",
    )

    @property
    def masks_prompts(self) -> bool:
        """Whether prompts are masked: only PMPO's own proposal reads a masking result."""
        return self.use_masking and self.proposal == "pmpo"
