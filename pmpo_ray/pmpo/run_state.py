"""One task run's durable state: everything that outlives a round, as one frozen record.

Between rounds a run holds no requests in flight, so this record is all a checkpoint needs to
resume it. Rounds never mutate it: each step returns an updated copy (`dataclasses.replace`),
so a state already handed to a checkpoint cannot change underneath it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated

from pydantic import PlainSerializer

from pmpo_ray.pmpo.records import IterationRecord, MaskingResult, Work
from pmpo_ray.pmpo.select import Candidate

INITIAL_ID = "init"


class Phase(StrEnum):
    """Which kind of round comes next; a StrEnum, so JSON holds the plain names."""

    MASK = "mask"
    REWRITE = "rewrite"
    DONE = "done"


# A set in memory; sorted in JSON so two checkpoints of one state are byte-identical (set
# order depends on the process's string hashing).
TextSet = Annotated[
    frozenset[str], PlainSerializer(sorted, return_type=list[str], when_used="json")
]


@dataclass(frozen=True)
class RunState:
    phase: Phase = Phase.MASK
    stop_reason: str = ""
    initial: Candidate | None = None  # None until the first round has scored it
    population: tuple[Candidate, ...] = ()  # best first
    # candidate -> example -> loss, for the prompts a later round still reads
    example_losses: dict[str, dict[str, float]] = field(default_factory=dict)
    masking_results: dict[str, MaskingResult] = field(default_factory=dict)
    # Every prompt scored so far (stripped): its loss is known, so a repeat would only cost a pass.
    scored_texts: TextSet = frozenset()
    history: tuple[IterationRecord, ...] = ()
    lineage: dict[str, str | None] = field(default_factory=lambda: {INITIAL_ID: None})
    work: Work = field(default_factory=Work)
    # spent since the last iteration record
    iteration_work: Work = field(default_factory=Work)

    @property
    def iteration(self) -> int:
        """The iteration under way (1-based): the one the next rewrite round completes."""
        return len(self.history) + 1

    def unmasked(self, initial_prompt: str) -> list[tuple[str, str]]:
        """(candidate id, text) of the prompts the rewriter cannot use yet; before the first
        round that is the initial prompt, which is not even scored."""
        if self.initial is None:
            return [(INITIAL_ID, initial_prompt)]
        return [
            (c.candidate_id, c.text)
            for c in self.population
            if c.candidate_id not in self.masking_results
        ]

    def counted(self, **amounts) -> RunState:
        """This state with work added to the run's and the current iteration's budgets."""
        spent = Work(**amounts)
        return replace(self, work=self.work + spent, iteration_work=self.iteration_work + spent)

    def pruned(self) -> RunState:
        """This state without the losses and masking_results of prompts that left the population
        (masked prompts included): no later round reads them, and checkpoints stay small."""
        keep = {c.candidate_id for c in self.population}
        if self.initial is not None:
            keep.add(self.initial.candidate_id)
        return replace(
            self,
            example_losses={c: v for c, v in self.example_losses.items() if c in keep},
            masking_results={c: a for c, a in self.masking_results.items() if c in keep},
        )
