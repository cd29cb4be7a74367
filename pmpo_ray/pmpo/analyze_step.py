"""The analyze round: segment each prompt not yet analyzed into units, then score the prompt with
each unit masked; the first round also scores the initial prompt itself.

A round is plan_generation -> take_generations -> take_scores. Each stage returns a frozen
record of what it asked for, which the next stage reads back; nothing is kept between calls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pmpo_ray.pmpo import masking
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.loss import mean_loss
from pmpo_ray.pmpo.next_round import after_analysis
from pmpo_ray.pmpo.records import Analysis
from pmpo_ray.pmpo.run_state import INITIAL_ID, RunState
from pmpo_ray.pmpo.select import Candidate
from pmpo_ray.requests import generation_row
from pmpo_ray.tasks.task import Task


@dataclass(frozen=True)
class Segmenting:
    """The generation stage: one segmentation request per unanalyzed prompt."""

    rows: tuple[dict, ...]  # GENERATE_REQUEST_SCHEMA rows
    candidate_of: dict[int, str]  # request id -> candidate id


@dataclass(frozen=True)
class Ablating:
    """The scoring stage: each unanalyzed prompt with each of its units masked in turn."""

    prompts: tuple[tuple[str, str], ...]  # (candidate id, text) to score, in request order
    segmentations: dict[str, masking.Segmentation]  # candidate id -> its units


class AnalyzeStep:
    kind = "ablation"  # the scoring rows' kind
    prefill = ""  # segmentations are generated from scratch

    def __init__(self, task: Task, config: OptimizerConfig):
        self.task = task
        self.config = config

    def plan_generation(self, state: RunState) -> Segmenting:
        if not self.config.analyzes_prompts:
            return Segmenting((), {})
        rows, candidate_of = [], {}
        for candidate_id, text in state.unanalyzed(self.task.initial_prompt):
            candidate_of[len(rows)] = candidate_id
            rows.append(
                generation_row(
                    len(rows),
                    task_id=self.task.task_id,
                    # The meta-prompt is the user's message; no system prompt competes with it.
                    prompt="",
                    role="user",
                    user_input=masking.segmentation_request(text, self.config.max_units),
                    prefill="",
                    n=1,
                    temperature=0.0,
                    top_p=1.0,
                    max_tokens=self.config.max_segmentation_tokens,
                    seed=0,
                )
            )
        return Segmenting(tuple(rows), candidate_of)

    def take_generations(
        self, state: RunState, plan: Segmenting, texts: dict[int, list[str]], lengths=None
    ) -> Ablating:
        """`lengths` is unused: segmentations are not measured in tokens."""
        # A request with no output gets None, which `masking.segment` answers with sentences.
        outputs = {plan.candidate_of[i]: texts.get(i, [None])[0] for i in plan.candidate_of}
        prompts = [(INITIAL_ID, self.task.initial_prompt)] if state.initial is None else []
        segmentations = {}
        if not self.config.analyzes_prompts:
            return Ablating(tuple(prompts), segmentations)
        for candidate_id, text in state.unanalyzed(self.task.initial_prompt):
            segmentation = masking.segment(text, outputs.get(candidate_id), self.config.max_units)
            segmentations[candidate_id] = segmentation
            for j, span in enumerate(segmentation.spans):
                prompts.append((f"{candidate_id}~mask{j}", masking.masked_prompt(text, span)))
        return Ablating(tuple(prompts), segmentations)

    def take_scores(self, state: RunState, plan: Ablating) -> RunState:
        """`state` already holds the round's losses; this turns them into analyses."""
        if state.initial is None:
            loss = mean_loss(state.example_losses[INITIAL_ID])
            initial = Candidate(INITIAL_ID, self.task.initial_prompt, loss, None, 0)
            state = replace(state, initial=initial, population=(initial,))
        by_id = {c.candidate_id: c for c in state.population}
        analyses = dict(state.analyses)
        for candidate_id, segmentation in plan.segmentations.items():
            units = segmentation.units(by_id[candidate_id].text)
            masked = [
                mean_loss(state.example_losses[f"{candidate_id}~mask{j}"])
                for j in range(len(units))
            ]
            deltas = masking.ablation_deltas(by_id[candidate_id].loss, masked)
            analyses[candidate_id] = Analysis(
                candidate_id,
                segmentation.method,
                segmentation.rejected_reason,
                tuple(units),
                tuple(deltas),
                masking.render_analysis(units, deltas, self.config.neutral_tolerance),
            )
        state = replace(state, analyses=analyses)
        return after_analysis(state, self.config, self.task.initial_prompt)
