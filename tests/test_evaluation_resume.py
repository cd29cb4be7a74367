"""Evaluation resumes too: each task's evaluation.json is written as soon as the task is done, a
failure keeps the finished tasks, and the next `pmpo evaluate` (or `--resume --evaluate`)
evaluates only the rest; a task evaluated with other settings, or whose file was cut short,
is evaluated again. `pmpo evaluate` of an unfinished suite says so in one line."""

import json

import pytest

import pmpo_ray
from pmpo_ray.cli import main
from tests.failures import EngineDown, FailingEngine, suite_config

OPTIMIZATION_SCORE_CALLS = 3  # the suite's rounds against the scripted engine


@pytest.fixture
def optimized(tmp_path):
    out = tmp_path / "suite"
    engine = FailingEngine()
    pmpo_ray.optimize_suite(suite_config(), out=out, engines=engine)
    assert len(engine.score_calls) == OPTIMIZATION_SCORE_CALLS
    return out


def evaluation_file(out, task_id):
    return out / "tasks" / task_id / "evaluation.json"


def test_a_failed_evaluation_keeps_finished_tasks_and_the_next_call_does_the_rest(optimized):
    with pytest.raises(EngineDown):  # navigate is scored and answered, then pairs fails
        pmpo_ray.evaluate(optimized, engines=FailingEngine(fail_on=2))
    assert evaluation_file(optimized, "navigate").is_file()
    assert not evaluation_file(optimized, "pairs").exists()
    kept = evaluation_file(optimized, "navigate").read_bytes()

    engine = FailingEngine()
    results = pmpo_ray.evaluate(optimized, engines=engine)
    assert len(engine.score_calls) == 1  # pairs only
    assert engine.generate_calls == []  # navigate's answers are not generated again
    assert set(results) == {"navigate", "pairs"}
    assert evaluation_file(optimized, "navigate").read_bytes() == kept
    assert evaluation_file(optimized, "pairs").is_file()


def test_other_settings_or_a_file_cut_short_are_evaluated_again(optimized, monkeypatch):
    pmpo_ray.evaluate(optimized, engines=FailingEngine())
    engine = FailingEngine()
    pmpo_ray.evaluate(optimized, engines=engine)
    assert engine.score_calls == []  # the same settings: everything kept

    engine = FailingEngine()
    results = pmpo_ray.evaluate(optimized, max_examples=2, engines=engine)
    assert len(engine.score_calls) == 2 and results["navigate"]["n_heldout"] == 2

    text = evaluation_file(optimized, "pairs").read_text()
    evaluation_file(optimized, "pairs").write_text(text[: len(text) // 3])  # a full disk
    engine = FailingEngine()
    pmpo_ray.evaluate(optimized, max_examples=2, engines=engine)
    # Written again whole, from the evaluation cache: nothing is scored twice.
    assert engine.score_calls == [] and json.loads(evaluation_file(optimized, "pairs").read_text())

    monkeypatch.setenv("PMPO_RAY_CACHE", "off")
    evaluation_file(optimized, "pairs").write_text(text[: len(text) // 3])
    engine = FailingEngine()
    pmpo_ray.evaluate(optimized, max_examples=2, engines=engine)
    assert len(engine.score_calls) == 1


def test_resume_evaluate_finishes_a_suites_evaluation(tmp_path):
    out = tmp_path / "suite"
    with pytest.raises(EngineDown):  # the optimization finishes; pairs' evaluation fails
        pmpo_ray.optimize_suite(
            suite_config(),
            out=out,
            evaluate=True,
            engines=FailingEngine(fail_on=OPTIMIZATION_SCORE_CALLS + 2),
        )
    assert (out / "suite.json").is_file() and evaluation_file(out, "navigate").is_file()
    with pytest.raises(ValueError, match="already finished.*--evaluate"):
        pmpo_ray.optimize_suite(suite_config(), out=out, resume=True, engines=FailingEngine())

    engine = FailingEngine()
    result = pmpo_ray.optimize_suite(
        suite_config(), out=out, resume=True, evaluate=True, engines=engine
    )
    # No round runs again; navigate, evaluated from the results in memory, is kept when read
    # back from its files; only pairs is evaluated.
    assert len(engine.score_calls) == 1 and engine.generate_calls == []
    assert set(result.evaluation) == {"navigate", "pairs"} and result.results == ()
    assert set(result.summary) == {"navigate", "pairs"}


@pytest.mark.parametrize("overwrite", [False, True])
def test_evaluate_of_an_unfinished_suite_says_so_in_one_line(tmp_path, capsys, overwrite):
    out = tmp_path / "suite"
    with pytest.raises(EngineDown):
        pmpo_ray.optimize_suite(
            suite_config(), out=out, overwrite=overwrite, engines=FailingEngine(fail_on=2)
        )
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "optimization is unfinished" in error and "--resume" in error
