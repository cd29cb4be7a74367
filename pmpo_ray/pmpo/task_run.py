"""One task's PMPO optimization as rounds it plans and is handed results for; it never calls an
engine.

Each round has a generation stage then a scoring stage. The run says what it needs
(`plan_generation`, `plan_scoring`) and is handed the results (`take_generations`,
`take_scores`); a driver decides how the requests of one or many tasks reach the engines. The
round's kind is the state's phase: a masking round (`masking_step.py`) or a rewrite round
(`rewrite_step.py`); `next_round.py` says which follows. Everything that outlives a round is
one `RunState`, which `checkpoint.py` saves and restores.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from pmpo_ray.config import PromptFormat
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.loss import NEEDS_REJECTED, example_losses, resolve_objective
from pmpo_ray.pmpo.masking_step import MaskingStep
from pmpo_ray.pmpo.records import IterationRecord, OptimizationResult
from pmpo_ray.pmpo.rewrite import complete_prefilled
from pmpo_ray.pmpo.rewrite_step import RewriteStep, TokenCounter
from pmpo_ray.pmpo.run_state import Phase, RunState
from pmpo_ray.pmpo.select import Candidate, best_candidate
from pmpo_ray.requests import GENERATE_REQUEST_SCHEMA, score_requests
from pmpo_ray.tasks.task import Task

GENERATED_COLUMNS = ("request_id", "text", "finish_reason")


class TaskRun:
    def __init__(
        self,
        task: Task,
        config: OptimizerConfig,
        count_tokens: TokenCounter,
        prompt_format: PromptFormat,
    ):
        if len(task.train) < config.hard_cases:
            raise ValueError(
                f"task {task.task_id!r}: {config.hard_cases} hard cases need at least "
                f"{config.hard_cases} training examples; the training split has {len(task.train)}"
            )
        self.task = task
        self.config = config
        self.count_tokens = count_tokens
        self.prompt_format = prompt_format
        self.objective = resolve_objective(config.objective, task.format)
        self.state = RunState(scored_texts=frozenset({task.initial_prompt.strip()}))
        self._started = time.perf_counter()  # an iteration's wall time runs from here
        self._steps = {
            Phase.MASK: MaskingStep(task, config),
            Phase.REWRITE: RewriteStep(task, config, count_tokens, self._lap),
        }
        # The current round's record of what it asked for (a step's plan), None between rounds:
        # a checkpoint is only ever taken between rounds, so it never needs saving.
        self._pending = None

    # ----- the durable state, read-only ---------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state.phase == Phase.DONE

    @property
    def population(self) -> tuple[Candidate, ...]:
        return self.state.population

    @property
    def history(self) -> tuple[IterationRecord, ...]:
        return self.state.history

    # ----- the round protocol -------------------------------------------------------------

    def plan_generation(self) -> pa.Table:
        self._pending = self._step().plan_generation(self.state)
        return pa.Table.from_pylist(list(self._pending.rows), schema=GENERATE_REQUEST_SCHEMA)

    def prompts_to_measure(self, generated: pa.Table) -> list[str]:
        """The texts whose scorer-token lengths `take_generations` needs: a driver counts those
        of many tasks in one call and passes them in."""
        step = self._step()
        if not isinstance(step, RewriteStep):
            return []
        return step.prompts_to_measure(self._texts(generated))

    def take_generations(
        self, generated: pa.Table, lengths: Mapping[str, int] | None = None
    ) -> None:
        """`lengths`: token counts of `prompts_to_measure(generated)`; None counts them here."""
        step, plan = self._step(), self._pending
        tokens = pc.sum(generated.column("n_tokens")).as_py() or 0
        self.state = self.state.counted(generation_requests=len(plan.rows), tokens_generated=tokens)
        self._pending = step.take_generations(self.state, plan, self._texts(generated), lengths)

    def _texts(self, generated: pa.Table) -> dict[int, list[str]]:
        """Request id -> its samples' texts, the prefill put back in front."""
        step = self._step()
        columns = [generated.column(name).to_pylist() for name in GENERATED_COLUMNS]
        texts: dict[int, list[str]] = {}
        for request_id, text, finish_reason in zip(*columns):
            # "stop": EOS, or a stop string the engine left out of the text
            finished = finish_reason == "stop"
            completed = complete_prefilled(step.prefill, text, finished, step.keep_cut)
            texts.setdefault(request_id, []).append(completed)
        return texts

    def plan_scoring(self) -> pa.Table:
        return score_requests(
            list(self._pending.prompts),
            self.task.train,
            task_id=self.task.task_id,
            kind=self._step().kind,
            role=self.prompt_format.role,
            with_rejected=self.objective in NEEDS_REJECTED,
        )

    def take_scores(self, scored: pa.Table) -> None:
        state = self.state
        if scored.num_rows:  # a rewrite round whose outputs were all rejected scores nothing
            tokens = pc.sum(scored.column("n_input_tokens")).as_py()
            state = state.counted(forward_passes=scored.num_rows, tokens_scored=tokens)
            losses = example_losses(
                scored,
                objective=self.objective,
                reduction=self.config.reduction,
                beta=self.config.beta,
            )
            state = replace(state, example_losses={**state.example_losses, **losses})
        self.state = self._step().take_scores(state, self._pending).pruned()
        self._pending = None

    def _step(self) -> MaskingStep | RewriteStep:
        if self.done:
            raise RuntimeError(f"task {self.task.task_id!r}: the run is done; no round to play")
        return self._steps[self.state.phase]

    # ----- bookkeeping ----------------------------------------------------------------------

    def _lap(self) -> float:
        now = time.perf_counter()
        elapsed, self._started = now - self._started, now
        return elapsed

    def result(self) -> OptimizationResult:
        state = self.state
        if state.initial is None:
            raise RuntimeError(f"task {self.task.task_id!r}: no round has run yet")
        return OptimizationResult(
            task_id=self.task.task_id,
            seed=self.config.seed,
            initial=state.initial,
            best=best_candidate(state.population),
            population=state.population,
            history=state.history,
            lineage=dict(state.lineage),
            work=state.work,
            stop_reason=state.stop_reason,
            skipped_rows=dict(self.task.skipped_rows),
        )
