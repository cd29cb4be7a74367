"""A task run's state between rounds as plain JSON, and back: what resuming a suite needs.

Between rounds a TaskRun holds no requests in flight, so its state is its phase, population,
history, lineage, analyses, budgets and the per-example losses of the prompts it may still
expand. Everything else (pending requests, masked variants' losses) lives inside one round.
"""

from __future__ import annotations

from dataclasses import asdict

from pmpo_ray.pmpo.records import Analysis, Budget, IterationRecord, RejectedRewrite
from pmpo_ray.pmpo.select import Candidate
from pmpo_ray.pmpo.task_run import TaskRun


def snapshot(run: TaskRun) -> dict:
    """The run's state after a finished round, in JSON-ready values."""
    keep = {c.candidate_id for c in run.population}
    if run.initial is not None:
        keep.add(run.initial.candidate_id)
    return {
        "task_id": run.task.task_id,
        "phase": run.phase,
        "stop_reason": run.stop_reason,
        "initial": asdict(run.initial) if run.initial else None,
        "population": [asdict(c) for c in run.population],
        "example_losses": {cid: run.example_losses[cid] for cid in keep},
        "analyses": {cid: asdict(a) for cid, a in run.analyses.items() if cid in keep},
        "scored_texts": sorted(run.scored_texts),
        "history": [asdict(record) for record in run.history],
        "lineage": run.lineage,
        "budget": asdict(run.budget),
        "iteration_budget": asdict(run.iteration_budget),
    }


def restore(run: TaskRun, state: dict) -> None:
    """Put a freshly built run (same task and config) back where `snapshot` left it."""
    if state["task_id"] != run.task.task_id:
        raise ValueError(
            f"checkpoint of task {state['task_id']!r} cannot resume task {run.task.task_id!r}"
        )
    run.phase = state["phase"]
    run.stop_reason = state["stop_reason"]
    run.initial = Candidate(**state["initial"]) if state["initial"] else None
    run.population = tuple(Candidate(**c) for c in state["population"])
    run.example_losses = {cid: dict(losses) for cid, losses in state["example_losses"].items()}
    run.analyses = {cid: _analysis(a) for cid, a in state["analyses"].items()}
    run.scored_texts = set(state["scored_texts"])
    run.history = [_iteration(record) for record in state["history"]]
    run.lineage = dict(state["lineage"])
    run.budget = Budget(**state["budget"])
    run.iteration_budget = Budget(**state["iteration_budget"])


def _analysis(data: dict) -> Analysis:
    return Analysis(**{**data, "units": tuple(data["units"]), "deltas": tuple(data["deltas"])})


def _iteration(data: dict) -> IterationRecord:
    return IterationRecord(
        iteration=data["iteration"],
        parent_ids=tuple(data["parent_ids"]),
        hard_cases={pid: tuple(ids) for pid, ids in data["hard_cases"].items()},
        analyses=tuple(_analysis(a) for a in data["analyses"]),
        candidates=tuple(Candidate(**c) for c in data["candidates"]),
        hard_case_of=dict(data["hard_case_of"]),
        rejected=tuple(RejectedRewrite(**r) for r in data["rejected"]),
        population=tuple(data["population"]),
        best_loss=data["best_loss"],
        improved=data["improved"],
        budget=Budget(**data["budget"]),
    )
