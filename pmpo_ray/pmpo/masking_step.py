"""The masking round: segment each prompt not yet masked into units, then score the prompt with
each unit masked; the first round also scores the initial prompt itself.

A round is plan_generation -> take_generations -> take_scores. Each stage returns a frozen
record of what it asked for, which the next stage reads back; nothing is kept between calls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pmpo_ray.pmpo import masking
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.loss import mean_loss
from pmpo_ray.pmpo.next_round import after_masking
from pmpo_ray.pmpo.records import MaskingResult
from pmpo_ray.pmpo.rewrite import meta_prompt_row
from pmpo_ray.pmpo.run_state import INITIAL_ID, RunState
from pmpo_ray.pmpo.select import Candidate
from pmpo_ray.tasks.task import Task


@dataclass(frozen=True)
class Segmenting:
    """The generation stage: one segmentation request per unmasked prompt."""

    rows: tuple[dict, ...]  # GENERATE_REQUEST_SCHEMA rows
    candidate_of: dict[int, str]  # request id -> candidate id


@dataclass(frozen=True)
class Ablating:
    """The scoring stage: each unmasked prompt with each of its units masked in turn."""

    prompts: tuple[tuple[str, str], ...]  # (candidate id, text) to score, in request order
    segmentations: dict[str, masking.Segmentation]  # candidate id -> its units


class MaskingStep:
    kind = "ablation"  # the scoring rows' kind
    prefill = ""  # segmentations are generated from scratch
    keep_cut = False  # a cut-off segmentation is not repaired

    def __init__(self, task: Task, config: OptimizerConfig):
        self.task = task
        self.config = config

    @property
    def masks(self) -> bool:
        """Whether this run masks prompts at all: not without masking, and not without
        iterations (no rewrite would read the result: the initial prompt is only scored)."""
        return self.config.masks_prompts and self.config.iterations > 0

    def plan_generation(self, state: RunState) -> Segmenting:
        if not self.masks:
            return Segmenting((), {})
        rows, candidate_of = [], {}
        for candidate_id, text in state.unmasked(self.task.initial_prompt):
            candidate_of[len(rows)] = candidate_id
            rows.append(
                meta_prompt_row(  # one greedy segmentation
                    len(rows),
                    task_id=self.task.task_id,
                    message=masking.segmentation_request(text, self.config.max_units),
                    max_tokens=self.config.max_segmentation_tokens,
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
        if not self.masks:
            return Ablating(tuple(prompts), segmentations)
        for candidate_id, text in state.unmasked(self.task.initial_prompt):
            segmentation = masking.segment(text, outputs.get(candidate_id), self.config.max_units)
            segmentations[candidate_id] = segmentation
            for j, span in enumerate(segmentation.spans):
                prompts.append((f"{candidate_id}~mask{j}", masking.masked_prompt(text, span)))
        return Ablating(tuple(prompts), segmentations)

    def take_scores(self, state: RunState, plan: Ablating) -> RunState:
        """`state` already holds the round's losses; this turns them into masking_results."""
        if state.initial is None:
            loss = mean_loss(state.example_losses[INITIAL_ID])
            initial = Candidate(INITIAL_ID, self.task.initial_prompt, loss, None, 0)
            state = replace(state, initial=initial, population=(initial,))
        by_id = {c.candidate_id: c for c in state.population}
        masking_results = dict(state.masking_results)
        for candidate_id, segmentation in plan.segmentations.items():
            units = segmentation.units(by_id[candidate_id].text)
            masked = [
                mean_loss(state.example_losses[f"{candidate_id}~mask{j}"])
                for j in range(len(units))
            ]
            deltas = masking.mask_deltas(by_id[candidate_id].loss, masked)
            masking_results[candidate_id] = MaskingResult(
                candidate_id,
                segmentation.method,
                segmentation.rejected_reason,
                tuple(units),
                tuple(deltas),
                masking.render_masking(units, deltas, self.config.neutral_tolerance),
            )
        state = replace(state, masking_results=masking_results)
        return after_masking(state, self.config, self.task.initial_prompt)
