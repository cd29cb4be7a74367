"""Resuming a suite from its last finished round gives the same results as never stopping."""

import json
from dataclasses import asdict, replace

import pytest

from pmpo_ray.config import PromptFormat
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.suite.checkpoints import SuiteCheckpoints
from pmpo_ray.suite.run import prepare_out_dir
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.task import Task
from tests.fakes import FakeEngine, scripted_rewrites

CONFIG = OptimizerConfig(iterations=3, hard_cases=2, rewrites_per_case=2)


class Crash(RuntimeError):
    pass


def make_runs() -> list[TaskRun]:
    # Word counts stand in for the scorer's tokenizer: no model is loaded.
    count_tokens = FakeEngine(scripted_rewrites).count_tokens
    runs = []
    for name in ("alpha", "beta"):
        train = tuple(
            Example(f"{name}{i}", f"{name} question {i}", "answer " * (i + 1)) for i in range(5)
        )
        task = Task(name, "supervised", "answer", "Think.", train, ())
        runs.append(TaskRun(task, CONFIG, count_tokens, PromptFormat()))
    return runs


def comparable(result) -> dict:
    """A result without wall-clock times, which differ between any two runs."""
    data = asdict(replace(result, work=replace(result.work, wall_seconds=0.0)))
    for record in data["history"]:
        record["work"]["wall_seconds"] = 0.0
    return data


def crash_after(manager: SuiteCheckpoints, last_round: int):
    def on_round(index, runs, stats):
        manager.on_round(index, runs, stats)
        if index == last_round:
            raise Crash(f"stopped after round {index}")

    return on_round


def test_resume_continues_where_the_checkpoint_left_off(tmp_path):
    engine = FakeEngine(scripted_rewrites)
    expected = run_rounds(make_runs(), rewriter=engine, scorer=engine)

    out = tmp_path / "suite"
    first = SuiteCheckpoints(make_runs(), out)
    with pytest.raises(Crash), first:  # leaving `first` puts the finished rounds on disk
        run_rounds(first.runs, rewriter=engine, scorer=engine, on_round=crash_after(first, 2))

    runs = make_runs()
    manager = SuiteCheckpoints(runs, out)
    assert manager.resume() == 2
    assert len(runs[0].history) == len(first.runs[0].history) >= 1
    counted = []
    with manager:
        results = run_rounds(
            runs,
            rewriter=engine,
            scorer=engine,
            on_round=lambda i, r, s: counted.append(i) or manager.on_round(i, r, s),
            rounds_done=2,
        )
    assert counted[0] == 3  # round numbering goes on; round files are never overwritten
    assert [comparable(r) for r in results] == [comparable(r) for r in expected]
    rounds = [json.loads(line)["round"] for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, *counted]


def test_resume_refuses_a_different_suite(tmp_path):
    engine = FakeEngine(scripted_rewrites)
    first = SuiteCheckpoints(make_runs(), tmp_path)
    with pytest.raises(Crash), first:
        run_rounds(first.runs, rewriter=engine, scorer=engine, on_round=crash_after(first, 1))
    other = SuiteCheckpoints(make_runs()[:1], tmp_path)
    with pytest.raises(ValueError, match="checkpoint holds tasks"):
        other.resume()


def test_out_dir_rules(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="nothing to resume"):
        prepare_out_dir(out, overwrite=False, resume=True)
    (out / "state").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "rounds.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="exists"):
        prepare_out_dir(out, overwrite=False, resume=False)
    prepare_out_dir(out, overwrite=False, resume=True)  # unfinished: resumable
    # --overwrite works beside the previous results, which stay until it finishes
    assert prepare_out_dir(out, overwrite=True, resume=False) == out / ".overwrite-staging"
    assert (out / "state").exists() and (out / "rounds.jsonl").exists()
    assert (out / "notes.txt").read_text() == "mine"
    (out / "suite.json").write_text("{}")
    with pytest.raises(ValueError, match="already finished"):
        prepare_out_dir(out, overwrite=False, resume=True)
