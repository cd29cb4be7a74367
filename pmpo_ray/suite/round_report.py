"""What a suite's round callbacks see after each round: the round's `rounds.jsonl` line, every
task's standing and the pools' totals, as one frozen record.

`optimize_suite(on_round=...)`, the Ray metrics and experiment tracking read the same record,
built once per round from what the checkpoints already gathered, so a callback never asks the
pools again or reads a run's mutable state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pmpo_ray.pmpo.records import Work
from pmpo_ray.pmpo.task_run import TaskRun


@dataclass(frozen=True)
class TaskStanding:
    task_id: str
    initial_loss: float | None  # None until the first round scored the initial prompt
    best_loss: float | None  # the best training loss so far
    iterations: int
    done: bool
    work: Work  # work done so far, against the task's budget


@dataclass(frozen=True)
class RoundReport:
    round: int  # 1-based, as in rounds.jsonl
    line: dict  # the round's rounds.jsonl line (stage times, requests, tokens, busy fractions)
    tasks: tuple[TaskStanding, ...]  # every task of the suite, in its order
    pools: dict  # pool name -> the client's totals (replicas, jobs, rows, tokens, busy seconds)

    @property
    def tasks_done(self) -> int:
        return sum(task.done for task in self.tasks)


RoundCallback = Callable[[RoundReport], None]


def standing(run: TaskRun) -> TaskStanding:
    state = run.state
    return TaskStanding(
        task_id=run.task.task_id,
        initial_loss=state.initial.loss if state.initial is not None else None,
        best_loss=state.population[0].loss if state.population else None,
        iterations=len(state.history),
        done=run.done,
        work=state.work,
    )


def round_report(round_index: int, line: dict, runs: Sequence[TaskRun], pools: dict) -> RoundReport:
    return RoundReport(round_index, dict(line), tuple(standing(run) for run in runs), dict(pools))
