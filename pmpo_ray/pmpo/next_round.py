"""Which round a run does next, and why it stops.

A masking result is reused while its prompt stays in the population, so an iteration that keeps
its incumbent costs one round (rewrite) and one that changes it costs two (masking, rewrite).
"""

from __future__ import annotations

from dataclasses import replace

from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.records import MaskingResult
from pmpo_ray.pmpo.run_state import Phase, RunState

# The stop reason of a run that played all its iterations (how many is reported beside it).
ITERATION_LIMIT = "iteration limit reached"


def after_masking(state: RunState, config: OptimizerConfig, initial_prompt: str) -> RunState:
    state = without_masking(state, config, initial_prompt)
    if config.iterations > 0:
        return replace(state, phase=Phase.REWRITE)
    return replace(state, phase=Phase.DONE, stop_reason="no iterations configured")


def after_iteration(state: RunState, config: OptimizerConfig, initial_prompt: str) -> RunState:
    if len(state.history) >= config.iterations:
        return replace(state, phase=Phase.DONE, stop_reason=ITERATION_LIMIT)
    if stale_iterations(state) >= (config.patience or float("inf")):
        return replace(
            state,
            phase=Phase.DONE,
            stop_reason=f"no improvement in {plural(config.patience, 'iteration')}",
        )
    if budget_spent(state, config.max_forward_passes):
        spent = state.work.forward_passes
        return replace(
            state,
            phase=Phase.DONE,
            stop_reason=f"forward-pass budget: {spent} of {config.max_forward_passes} spent",
        )
    if config.masks_prompts and state.unmasked(initial_prompt):
        return replace(state, phase=Phase.MASK)
    return replace(without_masking(state, config, initial_prompt), phase=Phase.REWRITE)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def without_masking(state: RunState, config: OptimizerConfig, initial_prompt: str) -> RunState:
    """With masking off there is nothing to measure; the rewriter is told so."""
    if config.masks_prompts:
        return state
    placeholders = {
        candidate_id: MaskingResult(candidate_id, "none", "", (), (), "(mask analysis disabled)")
        for candidate_id, _ in state.unmasked(initial_prompt)
    }
    return replace(state, masking_results={**state.masking_results, **placeholders})


def budget_spent(state: RunState, max_forward_passes: int | None) -> bool:
    """Whether the run ends nearer the budget by stopping now than by playing one more
    iteration, expected to cost what the last one did. Variants spend differently per
    iteration (masking, distractor rows); ending each as near the budget as it can keeps
    an equal-budget comparison about the prompts, not about who overshot most."""
    if max_forward_passes is None or not state.history:
        return False
    expected = state.history[-1].work.forward_passes
    return state.work.forward_passes + expected / 2 > max_forward_passes


def stale_iterations(state: RunState) -> int:
    """Iterations since the last improvement (all of them when none improved)."""
    stale = 0
    for record in reversed(state.history):
        if record.improved:
            break
        stale += 1
    return stale
