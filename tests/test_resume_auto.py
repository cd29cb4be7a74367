"""`--resume auto`, what a job that Kubernetes retries (or a user re-submits) runs: it starts
in a missing or empty folder, resumes an unfinished run of the same config, reports a finished
one, and refuses a folder of another run or of anything else in one line."""

import argparse

import pytest

import pmpo_ray
from pmpo_ray.cli import main
from tests.failures import EngineDown, FailingEngine, folder_bytes, suite_config


def history_bytes(out):
    return {path: data for path, data in folder_bytes(out / "tasks").items() if "history" in path}


def test_auto_starts_in_a_missing_or_empty_folder(tmp_path):
    for out in (tmp_path / "missing", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()  # a fresh volume, mounted before the job starts
        result = pmpo_ray.optimize_suite(
            suite_config(), out=out, resume="auto", engines=FailingEngine()
        )
        assert len(result.results) == 2 and (out / "suite.json").is_file()


def test_auto_resumes_a_cut_run_to_the_uninterrupted_runs_results(tmp_path):
    whole = tmp_path / "whole"
    pmpo_ray.optimize_suite(suite_config(), out=whole, engines=FailingEngine())
    cut = tmp_path / "cut"
    with pytest.raises(EngineDown):  # after the first round's checkpoint
        pmpo_ray.optimize_suite(suite_config(), out=cut, resume="auto", engines=FailingEngine(2))
    assert (cut / "state").is_dir() and not (cut / "suite.json").exists()
    engine = FailingEngine()
    pmpo_ray.optimize_suite(suite_config(), out=cut, resume="auto", engines=engine)
    assert history_bytes(cut) == history_bytes(whole)


def test_auto_reports_a_finished_run_without_running_anything(tmp_path, capsys):
    out = tmp_path / "suite"
    first = pmpo_ray.optimize_suite(suite_config(), out=out, engines=FailingEngine())
    engine = FailingEngine()
    again = pmpo_ray.optimize_suite(suite_config(), out=out, resume="auto", engines=engine)
    assert engine.score_calls == [] and again.results == () and again.summary == first.summary
    assert "already finished" in capsys.readouterr().out
    evaluated = pmpo_ray.optimize_suite(
        suite_config(), out=out, resume="auto", evaluate=True, engines=FailingEngine()
    )
    assert set(evaluated.evaluation) == {"navigate", "pairs"}


def test_auto_refuses_another_run_or_a_folder_of_something_else(tmp_path):
    out = tmp_path / "suite"
    pmpo_ray.optimize_suite(suite_config(), out=out, engines=FailingEngine())
    with pytest.raises(ValueError, match="cannot resume another run; changed since"):
        pmpo_ray.optimize_suite(
            suite_config(seed=1), out=out, resume="auto", engines=FailingEngine()
        )
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files but no suite run"):
        pmpo_ray.optimize_suite(suite_config(), out=other, resume="auto", engines=FailingEngine())
    assert (other / "todo.txt").read_text() == "mine"


def test_the_command_line_takes_resume_auto_and_refuses_other_values(tmp_path, capsys):
    from pmpo_ray.commands import suite

    parser = argparse.ArgumentParser()
    suite.add_options(parser)
    assert parser.parse_args(["--out", "x", "--resume", "auto"]).resume == "auto"
    assert parser.parse_args(["--out", "x", "--resume"]).resume is True
    assert parser.parse_args(["--out", "x"]).resume is False
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["suite", "pipelines/suites/tiny.yaml", "--out", str(tmp_path), "--resume", "later"])
    assert exited.value.code == 2
    assert "the only value --resume takes is auto" in capsys.readouterr().err


def test_on_round_sees_every_rounds_report(tmp_path):
    reports = []
    pmpo_ray.optimize_suite(
        suite_config(), out=tmp_path / "suite", engines=FailingEngine(), on_round=reports.append
    )
    assert [r.round for r in reports] == list(range(1, len(reports) + 1)) and reports
    last = reports[-1]
    assert {t.task_id for t in last.tasks} == {"navigate", "pairs"} and last.tasks_done == 2
    assert all(t.best_loss <= t.initial_loss and t.work.forward_passes > 0 for t in last.tasks)
    assert "scoring_requests" in last.line
