"""The rewrite round: sample rewrites of each population prompt from its hardest training
examples (or another proposal, proposals.py), score every rewrite that passes vetting, then
select; each one ends an iteration.

A round is plan_generation -> take_generations -> take_scores. Each stage returns a frozen
record of what it asked for, which the next stage reads back; nothing is kept between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.guards import shared_wording
from pmpo_ray.pmpo.loss import mean_loss
from pmpo_ray.pmpo.next_round import after_iteration
from pmpo_ray.pmpo.proposals import chosen_cases, proposal_message, shown_examples
from pmpo_ray.pmpo.records import IterationRecord, RejectedRewrite, Work
from pmpo_ray.pmpo.rewrite import (
    CLOSING_TAG,
    RESPONSE_PREFILL,
    extract_prompt,
    meta_prompt_row,
    vet_rewrite,
)
from pmpo_ray.pmpo.run_state import RunState
from pmpo_ray.pmpo.select import Candidate, update_population
from pmpo_ray.tasks.task import Task

# How many tokens each text is for the scorer's model; the engine client provides it, so the
# optimizer itself never loads a tokenizer.
TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class Rewriting:
    """The generation stage: rewrite requests for each parent's hard cases."""

    rows: tuple[dict, ...]  # GENERATE_REQUEST_SCHEMA rows
    asked: dict[int, tuple[str, str]]  # request id -> (parent id, example id)
    hard_cases: dict[str, tuple[str, ...]]  # parent id -> example ids, hardest first
    shown: dict[int, tuple[str, ...]]  # request id -> ids of the examples it showed


@dataclass(frozen=True)
class Rewrites:
    """The scoring stage: the rewrites that passed vetting, and why the others did not."""

    hard_cases: dict[str, tuple[str, ...]]  # parent id -> example ids, hardest first
    rewrites: tuple[Candidate, ...]  # loss NaN until scored
    hard_case_of: dict[str, str]  # rewrite id -> example id it was rewritten from
    rejected: tuple[RejectedRewrite, ...]

    @property
    def prompts(self) -> tuple[tuple[str, str], ...]:
        """(candidate id, text) to score, in request order."""
        return tuple((c.candidate_id, c.text) for c in self.rewrites)


class RewriteStep:
    kind = "candidate"  # the scoring rows' kind

    def __init__(
        self,
        task: Task,
        config: OptimizerConfig,
        count_tokens: TokenCounter,
        lap: Callable[[], float],
    ):
        self.task = task
        self.config = config
        self.count_tokens = count_tokens
        self.lap = lap  # seconds since the last lap: an iteration's wall time
        self.prefill = RESPONSE_PREFILL[config.meta_prompt]
        self.keep_cut = config.keep_cut_rewrites  # task_run.py completes the outputs with it
        # The task's question wording, which no rewrite copies from an example: once per task.
        self.shared = shared_wording(
            [example.input for example in task.train], config.guards.shared_wording_share
        )

    def plan_generation(self, state: RunState) -> Rewriting:
        rows, asked, hard, shown = [], {}, {}, {}
        examples = {e.example_id: e for e in self.task.train}
        for parent in state.population:
            cases = chosen_cases(
                self.config,
                state.example_losses[parent.candidate_id],
                iteration=state.iteration,
                parent_id=parent.candidate_id,
            )
            hard[parent.candidate_id] = tuple(cases)
            for example_id in cases:
                seed = self._seed(len(rows), state.iteration)
                request = proposal_message(
                    self.config,
                    task_description=self.task.description or "(none given)",
                    case=examples[example_id],
                    train=self.task.train,
                    analysis=state.masking_results[parent.candidate_id].text,
                    current_prompt=parent.text,
                    request_seed=seed,
                )
                asked[len(rows)] = (parent.candidate_id, example_id)
                shown[len(rows)] = tuple(
                    e.example_id
                    for e in shown_examples(
                        self.config,
                        case=examples[example_id],
                        train=self.task.train,
                        request_seed=seed,
                    )
                )
                rows.append(self._request(len(rows), request, seed))
        return Rewriting(tuple(rows), asked, hard, shown)

    def _seed(self, index: int, iteration: int) -> int:
        # Distinct per run seed, iteration and request, so reruns sample the same rewrites.
        return self.config.seed * 1_000_003 + iteration * 1_000 + index

    def _request(self, index: int, message: str, seed: int) -> dict:
        config = self.config
        return meta_prompt_row(
            index,
            task_id=self.task.task_id,
            message=message,
            prefill=self.prefill,
            n=config.rewrites_per_case,
            temperature=config.temperature,
            top_p=config.top_p if config.temperature > 0 else 1.0,
            max_tokens=config.max_rewrite_tokens,
            seed=seed,
            stop=(CLOSING_TAG,) if config.stop_at_prompt_tag else (),
        )

    def take_generations(
        self,
        state: RunState,
        plan: Rewriting,
        texts: dict[int, list[str]],
        lengths: Mapping[str, int] | None = None,
    ) -> Rewrites:
        """`lengths`: the scorer-token length of every text `prompts_to_measure` lists, when
        the driver counted them for many tasks at once; else counted here."""
        seen = set(state.scored_texts)
        rewrites, rejected, hard_case_of = [], [], {}
        by_id = {c.candidate_id: c for c in state.population}
        examples = {e.example_id: e for e in self.task.train}
        if lengths is None:
            distinct = self.prompts_to_measure(texts)
            lengths = dict(zip(distinct, self.count_tokens(distinct))) if distinct else {}
        for request_id, (parent_id, example_id) in plan.asked.items():
            for output in texts.get(request_id, []):
                vetted = vet_rewrite(
                    output,
                    current_prompt=by_id[parent_id].text,
                    seen=seen,
                    max_prompt_tokens=self.config.max_prompt_tokens,
                    count_tokens=lengths.__getitem__,
                    examples=[examples[shown_id] for shown_id in plan.shown[request_id]],
                    shared=self.shared,
                    guards=self.config.guards,
                )
                if vetted.text is None:
                    rejected.append(RejectedRewrite(parent_id, example_id, vetted.reason, output))
                    continue
                # Later samples of this round must not repeat it either.
                seen.add(vetted.text.strip())
                candidate_id = f"t{state.iteration}-c{len(rewrites)}"
                rewrites.append(
                    Candidate(candidate_id, vetted.text, float("nan"), parent_id, state.iteration)
                )
                hard_case_of[candidate_id] = example_id
        return Rewrites(plan.hard_cases, tuple(rewrites), hard_case_of, tuple(rejected))

    @staticmethod
    def prompts_to_measure(texts: dict[int, list[str]]) -> list[str]:
        """Every distinct prompt the outputs hold: vetting needs each one's token count."""
        extracted = {extract_prompt(output) for outputs in texts.values() for output in outputs}
        return sorted(text for text in extracted if text)

    def take_scores(self, state: RunState, plan: Rewrites) -> RunState:
        """`state` already holds the round's losses; select, record the iteration, go on."""
        iteration = state.iteration
        scored = tuple(
            replace(c, loss=mean_loss(state.example_losses[c.candidate_id])) for c in plan.rewrites
        )
        before = state.population
        population = update_population(before, scored, self.config.population_size)
        improved = population[0].loss < before[0].loss
        state = state.counted(wall_seconds=self.lap())
        record = IterationRecord(
            iteration=iteration,
            parent_ids=tuple(c.candidate_id for c in before),
            hard_cases=dict(plan.hard_cases),
            masking_results=tuple(state.masking_results[c.candidate_id] for c in before),
            candidates=before + scored,
            hard_case_of=dict(plan.hard_case_of),
            rejected=plan.rejected,
            population=tuple(c.candidate_id for c in population),
            best_loss=population[0].loss,
            improved=improved,
            work=state.iteration_work,
        )
        state = replace(
            state,
            population=population,
            lineage={**state.lineage, **{c.candidate_id: c.parent_id for c in scored}},
            scored_texts=state.scored_texts | {c.text.strip() for c in scored},
            history=(*state.history, record),
            iteration_work=Work(),
        )
        return after_iteration(state, self.config, self.task.initial_prompt)
