"""Experiment tracking in MLflow (suite/mlflow_tracking.py): a suite run on the scripted engine
logs a parent run and a nested run per task to a local `file:` store, read back with MLflow's
client; an unreachable server warns once and changes nothing; a missing extra fails in one line
before anything is written."""

import argparse
import json
import logging
import socket
import time

import pytest

import pmpo_ray
from pmpo_ray.commands import suite as suite_command
from pmpo_ray.suite import mlflow_tracking
from tests.failures import EngineDown, FailingEngine, folder_bytes, suite_config

TRACKER_LOG = "pmpo_ray.suite.mlflow_tracking"


@pytest.fixture
def mlflow(monkeypatch):
    """MLflow (the test extra installs it), allowed a file store, never phoning home."""
    import mlflow as module
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses it otherwise
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in mlflow_tracking.HTTP_BOUNDS:  # the tracker's own bounds apply
        monkeypatch.delenv(name, raising=False)
    return module


def tracked(uri: str, **config) -> dict:
    return {**suite_config(**config), "tracking": {"mlflow": {"tracking_uri": uri}}}


def suite_runs(client, experiment: str) -> tuple:
    """(the parent run, task id -> its nested run) of the experiment's only suite run."""
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    parents = [run for run in runs if mlflow_tracking.PARENT_TAG not in run.data.tags]
    assert len(parents) == 1
    [parent] = parents
    tasks = {run.data.tags["pmpo.task"]: run for run in runs if run is not parent}
    for run in tasks.values():
        assert run.data.tags[mlflow_tracking.PARENT_TAG] == parent.info.run_id
    return parent, tasks


def history_bytes(out):
    return {path: data for path, data in folder_bytes(out / "tasks").items() if "history" in path}


def outcome(summary: dict) -> dict:
    """What an optimization found (wall times left out)."""
    keys = ("initial_loss", "best_loss", "iterations", "stop_reason", "best_prompt")
    return {
        task: [row[key] for key in keys] + [row["work"]["forward_passes"]]
        for task, row in summary.items()
    }


def test_a_suite_logs_a_parent_run_and_a_nested_run_per_task(tmp_path, mlflow):
    from mlflow import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    reports = []
    out = tmp_path / "suite"
    result = pmpo_ray.optimize_suite(
        tracked(uri), out=out, evaluate=True, engines=FailingEngine(), on_round=reports.append
    )
    client = MlflowClient(tracking_uri=uri)
    parent, tasks = suite_runs(client, "faults")  # the experiment defaults to the suite's name
    assert set(tasks) == {"navigate", "pairs"} and parent.info.run_name == "suite"
    assert {run.info.status for run in [parent, *tasks.values()]} == {"FINISHED"}
    assert parent.data.params["optimizer.iterations"] == "2"
    assert json.loads(parent.data.params["tasks"]) == ["navigate", "pairs"]

    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    steps = list(range(1, len(rounds) + 1))
    tokens = client.get_metric_history(parent.info.run_id, "scoring_tokens")
    assert [(m.step, m.value) for m in tokens] == [
        (r["round"], r["scoring_tokens"]) for r in rounds
    ]
    for task_id, run in tasks.items():
        assert run.data.params["task.name"] == task_id
        assert run.data.params["optimizer.seed"] == "0"
        losses = client.get_metric_history(run.info.run_id, "best_loss")
        standings = [next(t for t in r.tasks if t.task_id == task_id) for r in reports]
        assert [m.step for m in losses] == steps
        assert [m.value for m in losses] == [s.best_loss for s in standings]
        assert losses[-1].value == result.summary[task_id]["best_loss"]
        passes = client.get_metric_history(run.info.run_id, "forward_passes")
        assert [m.step for m in passes] == steps
        assert passes[-1].value == result.summary[task_id]["work"]["forward_passes"]

        optimized = next(
            p for p in result.evaluation[task_id]["prompts"] if p["name"] == "optimized"
        )
        metrics = run.data.metrics
        assert metrics["heldout/optimized/heldout_ce"] == optimized["heldout_ce"]
        assert "heldout/initial/heldout_loss" in metrics
        if optimized["accuracy"] is not None:
            assert metrics["heldout/optimized/accuracy"] == optimized["accuracy"]

        artifacts = {info.path for info in client.list_artifacts(run.info.run_id)}
        assert {"best_prompt.txt", "history.parquet", "evaluation.json"} <= artifacts
        copy = client.download_artifacts(run.info.run_id, "best_prompt.txt", str(tmp_path))
        prompt = (out / "tasks" / task_id / "best_prompt.txt").read_text()
        assert open(copy, encoding="utf-8").read() == prompt
    artifacts = {info.path for info in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "suite.json"} <= artifacts


def test_an_unreachable_server_warns_once_and_changes_nothing(tmp_path, mlflow, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    plain = pmpo_ray.optimize_suite(suite_config(), out=tmp_path / "plain", engines=FailingEngine())
    untracked_s = time.monotonic() - started
    caplog.set_level(logging.WARNING, logger=TRACKER_LOG)
    started = time.monotonic()
    result = pmpo_ray.optimize_suite(
        tracked(f"http://127.0.0.1:{port}"),
        out=tmp_path / "tracked",
        evaluate=True,
        engines=FailingEngine(),
    )
    tracked_s = time.monotonic() - started
    warnings = [record for record in caplog.records if record.name == TRACKER_LOG]
    assert len(warnings) == 1 and "off for the rest of this run" in warnings[0].getMessage()
    assert outcome(result.summary) == outcome(plain.summary)
    assert history_bytes(tmp_path / "tracked") == history_bytes(tmp_path / "plain")
    assert result.evaluation is not None
    assert tracked_s < untracked_s + 20  # MLflow's own retries would take minutes


def test_a_failure_mid_run_warns_once_and_the_suite_finishes(tmp_path, mlflow, monkeypatch, caplog):
    from mlflow import MlflowClient

    calls = []

    def failing_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        calls.append(run_id)
        if metrics:  # the first round's metrics: the server went away
            raise ConnectionError("tracking server gone")
        return original(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    original = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", failing_batch)
    caplog.set_level(logging.WARNING, logger=TRACKER_LOG)
    uri = f"file:{tmp_path / 'mlruns'}"
    result = pmpo_ray.optimize_suite(tracked(uri), out=tmp_path / "suite", engines=FailingEngine())
    assert len(result.results) == 2
    warnings = [record for record in caplog.records if record.name == TRACKER_LOG]
    assert len(warnings) == 1 and "tracking server gone" in warnings[0].getMessage()
    after_failure = len(calls)
    monkeypatch.setattr(MlflowClient, "log_batch", original)
    _, tasks = suite_runs(MlflowClient(tracking_uri=uri), "faults")
    assert set(tasks) == {"navigate", "pairs"} and after_failure == len(calls)


def test_a_resumed_run_starts_new_mlflow_runs_that_continue_the_rounds(tmp_path, mlflow):
    from mlflow import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    out = tmp_path / "suite"
    with pytest.raises(EngineDown):  # after the first round's checkpoint
        pmpo_ray.optimize_suite(suite_config(), out=out, engines=FailingEngine(2))
    pmpo_ray.optimize_suite(tracked(uri), out=out, resume=True, engines=FailingEngine())
    parent, tasks = suite_runs(MlflowClient(tracking_uri=uri), "faults")
    losses = MlflowClient(tracking_uri=uri).get_metric_history(
        tasks["navigate"].info.run_id, "best_loss"
    )
    assert losses[0].step == 2  # round 1 was restored, not run again


def test_a_missing_extra_fails_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(mlflow_tracking, "find_spec", lambda name: None)
    out = tmp_path / "suite"
    with pytest.raises(ValueError, match=r"pip install 'pmpo-ray\[mlflow\]'"):
        pmpo_ray.optimize_suite(tracked("file:/nowhere"), out=out, engines=FailingEngine())
    assert not out.exists()


def test_the_command_line_flags_set_the_tracking_config():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    suite_command.add_options(parser)
    argv = ["pipelines/suites/tiny.yaml", "--out", "x", "--mlflow", "http://mlflow:5000"]
    args = parser.parse_args([*argv, "--mlflow-experiment", "pmpo"])
    mlflow = suite_command.suite_config(args).tracking.mlflow
    assert (mlflow.tracking_uri, mlflow.experiment, mlflow.run_name) == (
        "http://mlflow:5000",
        "pmpo",
        None,
    )
    assert suite_command.suite_config(parser.parse_args(argv[:3])).tracking is None
