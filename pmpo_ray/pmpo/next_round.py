"""Which round a run does next, and why it stops.

An analysis is reused while its prompt stays in the population, so an iteration that keeps its
incumbent costs one round (rewrite) and one that changes it costs two (analyze, rewrite).
"""

from __future__ import annotations

from dataclasses import replace

from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.records import Analysis
from pmpo_ray.pmpo.run_state import Phase, RunState


def after_analysis(state: RunState, config: OptimizerConfig, initial_prompt: str) -> RunState:
    state = without_masking(state, config, initial_prompt)
    if config.iterations > 0:
        return replace(state, phase=Phase.REWRITE)
    return replace(state, phase=Phase.DONE, stop_reason="no iterations configured")


def after_iteration(state: RunState, config: OptimizerConfig, initial_prompt: str) -> RunState:
    if len(state.history) >= config.iterations:
        return replace(state, phase=Phase.DONE, stop_reason=f"{config.iterations} iterations")
    if stale_iterations(state) >= (config.patience or float("inf")):
        return replace(
            state,
            phase=Phase.DONE,
            stop_reason=f"no improvement in {config.patience} iterations",
        )
    if config.use_masking and state.unanalyzed(initial_prompt):
        return replace(state, phase=Phase.ANALYZE)
    return replace(without_masking(state, config, initial_prompt), phase=Phase.REWRITE)


def without_masking(state: RunState, config: OptimizerConfig, initial_prompt: str) -> RunState:
    """With masking off there is nothing to measure; the rewriter is told so."""
    if config.use_masking:
        return state
    placeholders = {
        candidate_id: Analysis(candidate_id, "none", "", (), (), "(mask analysis disabled)")
        for candidate_id, _ in state.unanalyzed(initial_prompt)
    }
    return replace(state, analyses={**state.analyses, **placeholders})


def stale_iterations(state: RunState) -> int:
    """Iterations since the last improvement (all of them when none improved)."""
    stale = 0
    for record in reversed(state.history):
        if record.improved:
            break
        stale += 1
    return stale
