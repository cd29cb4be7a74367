"""One task's PMPO optimization as a state machine over rounds; it never calls an engine.

Each round has a generation stage then a scoring stage. The run says what it needs
(`plan_generation`, `plan_scoring`) and is handed the results (`take_generations`,
`take_scores`); a driver decides how the requests of one or many tasks reach the engines. Two
kinds of round alternate:

- analyze: segment each population prompt not yet analyzed into units, then score the prompt
  with each unit masked (the very first round also scores the initial prompt);
- rewrite: sample rewrites of each population prompt from its hardest training examples, then
  score every valid variant; selection ends the iteration.

An analysis is reused while its prompt stays in the population, so an iteration that keeps its
incumbent costs one round and one that changes it costs two.
"""

from __future__ import annotations

import time

import pyarrow as pa

from pmpo_ray.config import PromptFormat
from pmpo_ray.pmpo import masking
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.loss import example_losses, mean_loss
from pmpo_ray.pmpo.records import (
    Analysis,
    Budget,
    IterationRecord,
    OptimizationResult,
    RejectedRewrite,
)
from pmpo_ray.pmpo.rewrite import (
    RESPONSE_PREFILL,
    complete_prefilled,
    rewrite_request,
    vet_rewrite,
)
from pmpo_ray.pmpo.select import Candidate, best_candidate, hard_cases, update_population
from pmpo_ray.requests import GENERATE_REQUEST_SCHEMA, render_context, score_requests
from pmpo_ray.tasks.task import Task

INITIAL_ID = "init"


class TaskRun:
    def __init__(self, task: Task, config: OptimizerConfig, tokenizer, prompt_format: PromptFormat):
        if len(task.train) < config.hard_cases:
            raise ValueError(
                f"task {task.task_id!r}: {config.hard_cases} hard cases need at least "
                f"{config.hard_cases} training examples; the training split has {len(task.train)}"
            )
        self.task = task
        self.config = config
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format
        self.objective = resolve_objective(config.objective, task.format)
        self.phase = "analyze"
        self.population: tuple[Candidate, ...] = ()
        self.initial: Candidate | None = None
        self.example_losses: dict[str, dict[str, float]] = {}  # candidate -> example -> loss
        self.analyses: dict[str, Analysis] = {}
        self.scored_texts: set[str] = {task.initial_prompt.strip()}
        self.history: list[IterationRecord] = []
        self.lineage: dict[str, str | None] = {INITIAL_ID: None}
        self.budget = Budget()
        self.iteration_budget = Budget()
        self.stop_reason = ""
        self._pending: dict = {}  # what the current round asked for, by request id
        self._started = time.perf_counter()

    # ----- the round protocol -------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def plan_generation(self) -> pa.Table:
        if self.phase == "analyze":
            rows = self._segmentation_rows()
        else:
            rows = self._rewrite_rows()
        return pa.Table.from_pylist(rows, schema=GENERATE_REQUEST_SCHEMA)

    def take_generations(self, generated: pa.Table) -> None:
        tokens = sum(generated.column("n_tokens").to_pylist())
        self._count(generation_requests=len(self._pending), tokens_generated=tokens)
        prefill = RESPONSE_PREFILL[self.config.meta_prompt] if self.phase == "rewrite" else ""
        texts: dict[int, list[str]] = {}
        for row in generated.to_pylist():
            text = complete_prefilled(prefill, row["text"], row["finish_reason"] == "stop")
            texts.setdefault(row["request_id"], []).append(text)
        if self.phase == "analyze":
            self._segmentations = {self._pending[i]: texts.get(i, [None])[0] for i in self._pending}
        else:
            self._variants, self._rejected = self._vet(texts)

    def plan_scoring(self) -> pa.Table:
        if self.phase == "analyze":
            prompts = self._ablation_prompts()
        else:
            prompts = [(c.candidate_id, c.text) for c in self._variants]
        return score_requests(
            self.tokenizer,
            prompts,
            self.task.train,
            task_id=self.task.task_id,
            kind="ablation" if self.phase == "analyze" else "candidate",
            role=self.prompt_format.role,
            with_rejected=self.objective == "preference",
        )

    def take_scores(self, scored: pa.Table) -> None:
        if scored.num_rows:  # a rewrite round whose outputs were all rejected scores nothing
            tokens = sum(scored.column("n_input_tokens").to_pylist())
            self._count(forward_passes=scored.num_rows, tokens_scored=tokens)
            losses = example_losses(
                scored,
                objective=self.objective,
                reduction=self.config.reduction,
                beta=self.config.beta,
            )
            self.example_losses.update(losses)
        if self.phase == "analyze":
            self._finish_analysis()
        else:
            self._finish_iteration()

    # ----- analyze rounds -------------------------------------------------------------------

    def _unanalyzed(self) -> list[tuple[str, str]]:
        if self.initial is None:
            return [(INITIAL_ID, self.task.initial_prompt)]
        return [
            (c.candidate_id, c.text) for c in self.population if c.candidate_id not in self.analyses
        ]

    def _segmentation_rows(self) -> list[dict]:
        self._pending = {}
        if not self.config.use_masking:
            return []
        rows = []
        for candidate_id, text in self._unanalyzed():
            request = masking.segmentation_request(text, self.config.max_units)
            rows.append(
                self._generation_row(
                    len(rows),
                    request,
                    n=1,
                    temperature=0.0,
                    max_tokens=self.config.max_segmentation_tokens,
                )
            )
            self._pending[len(rows) - 1] = candidate_id
        return rows

    def _ablation_prompts(self) -> list[tuple[str, str]]:
        prompts = [(INITIAL_ID, self.task.initial_prompt)] if self.initial is None else []
        self._segments = {}
        if not self.config.use_masking:
            return prompts
        for candidate_id, text in self._unanalyzed():
            output = self._segmentations.get(candidate_id)
            segmentation = masking.segment(text, output, self.config.max_units)
            self._segments[candidate_id] = segmentation
            for j, span in enumerate(segmentation.spans):
                prompts.append((f"{candidate_id}~mask{j}", masking.masked_prompt(text, span)))
        return prompts

    def _finish_analysis(self) -> None:
        if self.initial is None:
            loss = mean_loss(self.example_losses[INITIAL_ID])
            self.initial = Candidate(INITIAL_ID, self.task.initial_prompt, loss, None, 0)
            self.population = (self.initial,)
        by_id = {c.candidate_id: c for c in self.population}
        for candidate_id, segmentation in self._segments.items():
            units = segmentation.units(by_id[candidate_id].text)
            masked = [
                mean_loss(self.example_losses[f"{candidate_id}~mask{j}"]) for j in range(len(units))
            ]
            deltas = masking.ablation_deltas(by_id[candidate_id].loss, masked)
            rendered = masking.render_analysis(units, deltas, self.config.neutral_tolerance)
            self.analyses[candidate_id] = Analysis(
                candidate_id,
                segmentation.method,
                segmentation.rejected_reason,
                tuple(units),
                tuple(deltas),
                rendered,
            )
        self._skip_analysis_without_masking()
        self.phase = "rewrite" if self.config.iterations > 0 else "done"
        if self.phase == "done":
            self.stop_reason = "no iterations configured"

    # ----- rewrite rounds -------------------------------------------------------------------

    def _rewrite_rows(self) -> list[dict]:
        self._pending, self._hard = {}, {}
        rows = []
        iteration = len(self.history) + 1
        examples = {e.example_id: e for e in self.task.train}
        for parent in self.population:
            cases = hard_cases(self.example_losses[parent.candidate_id], self.config.hard_cases)
            self._hard[parent.candidate_id] = tuple(cases)
            for example_id in cases:
                example = examples[example_id]
                request = rewrite_request(
                    self.config.meta_prompt,
                    task_description=self.task.description or "(none given)",
                    user_input=example.input,
                    true_answer=example.target,
                    mask_analysis=self.analyses[parent.candidate_id].text,
                    current_prompt=parent.text,
                )
                seed = self.config.seed * 1_000_003 + iteration * 1_000 + len(rows)
                rows.append(
                    self._generation_row(
                        len(rows),
                        request,
                        n=self.config.rewrites_per_case,
                        temperature=self.config.temperature,
                        max_tokens=self.config.max_rewrite_tokens,
                        seed=seed,
                        prefill=RESPONSE_PREFILL[self.config.meta_prompt],
                    )
                )
                self._pending[len(rows) - 1] = (parent.candidate_id, example_id)
        return rows

    def _vet(self, texts: dict[int, list[str]]) -> tuple[list[Candidate], list[RejectedRewrite]]:
        iteration = len(self.history) + 1
        # Every prompt scored so far: its loss is known, so a repeat would only cost a pass.
        seen = set(self.scored_texts)
        variants, rejected, self._hard_case_of = [], [], {}
        by_id = {c.candidate_id: c for c in self.population}
        for request_id, (parent_id, example_id) in self._pending.items():
            for output in texts.get(request_id, []):
                vetted = vet_rewrite(
                    output,
                    current_prompt=by_id[parent_id].text,
                    seen=seen,
                    max_prompt_tokens=self.config.max_prompt_tokens,
                    count_tokens=self._count_tokens,
                )
                if vetted.text is None:
                    rejected.append(RejectedRewrite(parent_id, example_id, vetted.reason, output))
                    continue
                seen.add(vetted.text.strip())
                candidate_id = f"t{iteration}-c{len(variants)}"
                variants.append(
                    Candidate(candidate_id, vetted.text, float("nan"), parent_id, iteration)
                )
                self._hard_case_of[candidate_id] = example_id
        return variants, rejected

    def _finish_iteration(self) -> None:
        iteration = len(self.history) + 1
        scored = [
            Candidate(
                c.candidate_id,
                c.text,
                mean_loss(self.example_losses[c.candidate_id]),
                c.parent_id,
                iteration,
            )
            for c in self._variants
        ]
        for candidate in scored:
            self.lineage[candidate.candidate_id] = candidate.parent_id
            self.scored_texts.add(candidate.text.strip())
        before = self.population
        self.population = update_population(before, scored, self.config.population_size)
        improved = self.population[0].loss < before[0].loss
        self.history.append(self._record(iteration, before, scored, improved))
        self._advance(improved)

    def _record(self, iteration: int, before, scored, improved: bool) -> IterationRecord:
        self._count(wall_seconds=self._lap())
        record = IterationRecord(
            iteration=iteration,
            parent_ids=tuple(c.candidate_id for c in before),
            hard_cases=dict(self._hard),
            analyses=tuple(self.analyses[c.candidate_id] for c in before),
            candidates=tuple(before) + tuple(scored),
            hard_case_of=dict(self._hard_case_of),
            rejected=tuple(self._rejected),
            population=tuple(c.candidate_id for c in self.population),
            best_loss=self.population[0].loss,
            improved=improved,
            budget=self.iteration_budget,
        )
        self.iteration_budget = Budget()
        return record

    def _advance(self, improved: bool) -> None:
        if len(self.history) >= self.config.iterations:
            self.phase, self.stop_reason = "done", f"{self.config.iterations} iterations"
        elif self._stale_iterations() >= (self.config.patience or float("inf")):
            self.phase, self.stop_reason = (
                "done",
                f"no improvement in {self.config.patience} iterations",
            )
        elif self.config.use_masking and self._unanalyzed():
            self.phase = "analyze"
        else:
            self._skip_analysis_without_masking()
            self.phase = "rewrite"

    def _skip_analysis_without_masking(self) -> None:
        """With masking off there is nothing to measure; the rewriter is told so."""
        if self.config.use_masking:
            return
        for candidate_id, _ in self._unanalyzed():
            self.analyses[candidate_id] = Analysis(
                candidate_id, "none", "", (), (), "(mask analysis disabled)"
            )

    def _stale_iterations(self) -> int:
        stale = 0
        for record in reversed(self.history):
            if record.improved:
                break
            stale += 1
        return stale

    # ----- bookkeeping ----------------------------------------------------------------------

    def _generation_row(
        self,
        index: int,
        message: str,
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int = 0,
        prefill: str = "",
    ) -> dict:
        """A generation request whose user message is `message`; the answer starts with `prefill`."""
        context = render_context(self.tokenizer, "", message, "user") + prefill
        return {
            "request_id": index,
            "task_id": self.task.task_id,
            "context": context,
            "n": n,
            "temperature": temperature,
            "top_p": self.config.top_p if temperature > 0 else 1.0,
            "max_tokens": max_tokens,
            "seed": seed,
        }

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _count(self, **amounts) -> None:
        self.iteration_budget = self.iteration_budget + Budget(**amounts)
        self.budget = self.budget + Budget(**amounts)

    def _lap(self) -> float:
        now = time.perf_counter()
        elapsed, self._started = now - self._started, now
        return elapsed

    def result(self) -> OptimizationResult:
        if self.initial is None:
            raise RuntimeError(f"task {self.task.task_id!r}: no round has run yet")
        return OptimizationResult(
            task_id=self.task.task_id,
            seed=self.config.seed,
            initial=self.initial,
            best=best_candidate(self.population),
            population=self.population,
            history=tuple(self.history),
            lineage=dict(self.lineage),
            budget=self.budget,
            stop_reason=self.stop_reason,
        )


def resolve_objective(objective: str, task_format: str) -> str:
    if objective != "auto":
        if objective == "preference" and task_format == "supervised":
            raise ValueError(
                "the preference objective needs rejected answers: use a multiple_choice or preference task"
            )
        return objective
    return "preference" if task_format == "preference" else "ce"
