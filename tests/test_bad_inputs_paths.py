"""The last bad inputs: paths and interrupts. A report writes and removes only its own files
inside the run folder; a link as --out is followed to an existing folder and refused
otherwise, before any work; Ctrl-C prints one line (what was saved, how to go on) and exits
130; inputs that used to fail only after an engine loaded fail before it, in one line; and the
small ones: a missing model folder, a directory as data, a relative data path, iterations: 0
and the stop reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import pmpo_ray
from pmpo_ray.cli import main
from pmpo_ray.config import ModelConfig
from pmpo_ray.engines.models import ModelNotFoundError, local_model_folder, resolve_model_path
from pmpo_ray.engines.simulated_engine import SimulatedConfig
from pmpo_ray.pmpo.config import OptimizerConfig
from pmpo_ray.reports.figure_folder import MANIFEST
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.saved import suite_saved
from pmpo_ray.studies.run import run_study, study_saved
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_examples
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.task import load_task
from tests.failures import EngineDown, FailingEngine, replace_open_engines, suite_config
from tests.test_study import study_config

REPO = Path(__file__).resolve().parents[1]
NAVIGATE = {
    "name": "navigate",
    "data": "builtin:bbh/navigate.json",
    "format": "multiple_choice",
    "initial_prompt": "Answer.",
    "max_train": 4,
}
SIMULATED = {"engine": {"backend": "simulated"}}


def job_yaml(folder: Path, task: dict | None = None, iterations: int = 1, **job) -> Path:
    """A `pmpo optimize` config on the simulated backend (no model)."""
    raw = {
        "task": task or NAVIGATE,
        "optimizer": {"iterations": iterations, "hard_cases": 1, "rewrites_per_case": 1},
        "scorer": SIMULATED,
        **job,
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith(f"pmpo {command}: error: "), err
    return err


def no_engines(*args, **kwargs):
    raise AssertionError("engines were opened before the bad input was refused")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished `pmpo optimize` run folder (simulated backend, one iteration)."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(["optimize", str(job_yaml(folder)), "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


# ----- a report writes and removes only its own files, inside the run folder ----------------


def test_a_linked_report_files_is_refused_and_the_linked_folder_untouched(
    run_dir, tmp_path, capsys
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "holiday.png").write_bytes(b"a user's picture")
    (run_dir / layout.REPORT_FILES).symlink_to(elsewhere)
    assert main(["report", str(run_dir)]) == 2
    assert "is a link" in one_line(capsys, "report")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["holiday.png"]
    assert (elsewhere / "holiday.png").read_bytes() == b"a user's picture"
    assert not (run_dir / layout.REPORT_MARKDOWN).exists()  # refused before writing anything


def test_a_report_removes_only_the_figures_an_earlier_report_wrote(run_dir):
    assert main(["report", str(run_dir)]) == 0
    figures = run_dir / layout.REPORT_FILES
    assert json.loads((figures / MANIFEST).read_text()) == ["loss-navigate.png"]
    (figures / "mine.png").write_bytes(b"kept")  # a user's file: never the report's
    (figures / "loss-gone.png").write_bytes(b"an earlier report's figure of a task now gone")
    (figures / MANIFEST).write_text(json.dumps(["loss-navigate.png", "loss-gone.png"]))
    assert main(["report", str(run_dir)]) == 0
    assert sorted(p.name for p in figures.glob("*.png")) == ["loss-navigate.png", "mine.png"]
    assert (figures / "mine.png").read_bytes() == b"kept"


def test_a_linked_study_files_is_refused_before_the_study_starts(tmp_path, monkeypatch):
    monkeypatch.setattr("pmpo_ray.studies.run.suite_engines", no_engines)
    out, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "study_files").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="study_files: is a link"):
        run_study(study_config(scorer=SIMULATED), out=out)


# ----- a link as --out: followed to an existing folder, refused otherwise, before any work --


def test_a_dangling_link_as_the_suite_out_fails_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pmpo_ray.commands.suite.optimize_suite", no_engines)
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite_config()))
    assert main(["suite", str(config), "--out", str(link)]) == 2
    line = one_line(capsys, "suite")
    assert f"--out {link}: a link to {tmp_path / 'nowhere'}, which does not exist" in line
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_dangling_link_as_the_suite_out_is_refused_by_the_api(tmp_path, monkeypatch):
    replace_open_engines(monkeypatch, no_engines)
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="a link to .*which does not exist"):
        pmpo_ray.optimize_suite(suite_config(), out=link)
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_dangling_link_as_the_optimize_out_fails_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pmpo_ray.commands.optimize.optimize", no_engines)
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    assert main(["optimize", str(job_yaml(tmp_path)), "--out", str(link)]) == 2
    assert "a link to" in one_line(capsys, "optimize")


def test_a_dangling_link_as_the_study_out_fails_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pmpo_ray.studies.run.suite_engines", no_engines)
    link = tmp_path / "study"
    link.symlink_to(tmp_path / "nowhere")
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study_config().model_dump(mode="json")))
    assert main(["study", str(config), "--out", str(link)]) == 2
    assert "a link to" in one_line(capsys, "study")
    with pytest.raises(ValueError, match="a link to"):
        run_study(study_config(scorer=SIMULATED), out=link)


def test_overwrite_onto_a_link_replaces_the_folder_it_points_to(run_dir, tmp_path):
    link = tmp_path / "latest"
    link.symlink_to(run_dir)
    (run_dir / "result.json").write_text("{}")  # the previous run, to be replaced
    assert main(["optimize", str(job_yaml(tmp_path)), "--out", str(link), "--overwrite"]) == 0
    assert link.is_symlink() and link.resolve() == run_dir.resolve()
    assert json.loads((run_dir / "result.json").read_text())["task_id"] == "navigate"
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == []  # no staging folder, and no `.latest.staging.*.old` link


def test_a_link_to_a_folder_as_the_suite_out_is_followed(tmp_path):
    target, link = tmp_path / "volume", tmp_path / "out"
    target.mkdir()
    link.symlink_to(target)
    pmpo_ray.optimize_suite(suite_config(iterations=1), out=link, engines=FailingEngine())
    assert link.is_symlink() and (target / layout.SUITE_SUMMARY).is_file()


# ----- Ctrl-C: one line, what was saved, exit 130 -------------------------------------------


@pytest.mark.ray
def test_ctrl_c_in_a_suite_prints_one_line_and_exits_130(tmp_path):
    config = {
        "name": "interrupted",
        "optimizer": {"iterations": 50, "hard_cases": 1, "rewrites_per_case": 1},
        "tasks": [{"task": NAVIGATE}],
        # slow enough calls that rounds are still going when the signal arrives
        "scorer": {
            "engine": {"backend": "simulated", "seconds_per_call": 0.5},
            "replicas": {"num_replicas": 1, "num_cpus": 1},
        },
    }
    path, out = tmp_path / "suite.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "pmpo_ray.cli", "suite", str(path), "--out", str(out)]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(process.stderr), daemon=True)
    reader.start()
    try:
        for line in process.stdout:
            if line.startswith("round 1 "):
                break
        else:
            pytest.fail(f"no round line; stderr: {''.join(err)}")
        # Ray's own start-up lines come before the first round; wait until they are read.
        deadline = time.time() + 10
        while not any("Started a local Ray" in e for e in err) and time.time() < deadline:
            time.sleep(0.1)
        before = len(err)
        process.send_signal(signal.SIGINT)
        process.stdout.read()
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    after = err[before:]
    assert len(after) == 1, "".join(err)
    line = after[0].strip()
    assert line.startswith("pmpo suite: interrupted; the finished rounds are saved"), line
    assert "--resume" in line
    saved = Path(re.search(r"the last in (\S+?)\)", line).group(1))
    assert saved.is_file() and saved.parent == layout.state_dir(out)


def main_interrupted(argv: list[str]) -> int:
    """`main(argv)` where the work is cut short by Ctrl-C; a KeyboardInterrupt escaping it
    fails the test instead of stopping the test session."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command as a KeyboardInterrupt (a traceback)")


def test_ctrl_c_in_optimize_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pmpo_ray.commands.optimize.optimize", interrupted)
    code = main_interrupted(["optimize", str(job_yaml(tmp_path)), "--out", str(tmp_path / "run")])
    assert code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar's line
    assert last.startswith("pmpo optimize: interrupted; nothing was saved")
    assert "Traceback" not in last and not (tmp_path / "run").exists()


def test_ctrl_c_in_evaluate_counts_the_tasks_saved(run_dir, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pmpo_ray.commands.evaluate.evaluate", interrupted)
    assert main_interrupted(["evaluate", str(run_dir)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        "pmpo evaluate: interrupted; 0 of 1 task(s) have an evaluation.json; run the same "
        "command again to continue (tasks evaluated with the same settings are kept)"
    )


@pytest.mark.parametrize("entrypoint", ["pmpo suite", "pipelines.optimize_suite"])
def test_ctrl_c_before_a_suite_starts_says_nothing_was_saved(
    entrypoint, tmp_path, capsys, monkeypatch
):
    from pipelines.optimize_suite import main as pipeline_main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pmpo_ray.commands.suite.optimize_suite", interrupted)
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(suite_config()))
    options = ["--out", str(tmp_path / "out")]
    if entrypoint == "pmpo suite":
        code = main_interrupted(["suite", str(config), *options])
    else:
        try:
            code = pipeline_main(["--config", str(config), *options])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped the job entrypoint as a KeyboardInterrupt")
    assert code == 130
    name = "pmpo suite" if entrypoint == "pmpo suite" else "optimize_suite"
    err = capsys.readouterr().err.strip()
    assert err == f"{name}: interrupted; nothing was saved; run the same command again"


def test_an_overwrite_that_fails_before_its_first_round_leaves_no_staging(tmp_path, monkeypatch):
    def engines_fail(*args, **kwargs):
        raise EngineDown("no replica started")

    replace_open_engines(monkeypatch, engines_fail)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(EngineDown):
        pmpo_ray.optimize_suite(suite_config(), out=out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no .overwrite-staging/


def test_an_interrupted_overwrite_without_a_round_is_tidied(tmp_path):
    out = tmp_path / "out"
    layout.state_dir(layout.overwrite_staging_dir(out)).mkdir(parents=True)
    (out / "suite.json").write_text("{}")  # the previous run's
    line = suite_saved(out, overwrite=True)
    assert line == f"no round had finished; {out} keeps its previous results"
    assert not layout.overwrite_staging_dir(out).exists()


def test_an_interrupted_overwrite_with_rounds_names_the_last_and_how_to_resume(tmp_path):
    out = tmp_path / "out"
    staging = layout.overwrite_staging_dir(out)
    layout.state_dir(staging).mkdir(parents=True)
    for index in (1, 2):
        layout.state_path(staging, index).write_text("{}")
    line = suite_saved(out, overwrite=True)
    assert str(layout.state_path(staging, 2)) in line
    assert "--resume in place of --overwrite" in line


def test_an_interrupted_study_says_where_its_runs_are_and_how_to_go_on(tmp_path):
    out = tmp_path / "study"
    runs = out / "runs"
    layout.state_dir(runs).mkdir(parents=True)
    layout.state_path(runs, 3).write_text("{}")
    line = study_saved(out)
    assert str(layout.state_path(runs, 3)) in line and "with --resume" in line
    layout.suite_summary_path(runs).write_text("{}")  # the runs finished: evaluation was cut
    assert study_saved(out).startswith(f"the study's runs had finished ({runs}); run the same")


# ----- inputs that used to fail only after an engine loaded ---------------------------------


def window_job(folder: Path, task: dict) -> Path:
    """A job on the default model's tokenizer with a window of 40 tokens."""
    scorer = {"engine": {"backend": "vllm", "model": {"max_model_len": 40}}}
    return job_yaml(folder, task, scorer=scorer)


def test_optimize_names_the_file_of_a_training_row_over_the_window(tmp_path, capsys, monkeypatch):
    replace_open_engines(monkeypatch, no_engines)
    job = window_job(tmp_path, NAVIGATE)
    assert main(["optimize", str(job), "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys, "optimize")
    assert "builtin:bbh/navigate.json: request" in line
    assert "over the model's window of 40" in line and "example '" in line
    assert not (tmp_path / "run").exists()


def test_optimize_checks_held_out_rows_too(tmp_path, capsys, monkeypatch):
    replace_open_engines(monkeypatch, no_engines)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps({"input": f"{i}", "target": "a"}) + "\n" for i in range(3)))
    long = {"input": "word " * 200, "target": "a"}
    test.write_text(json.dumps({"input": "short", "target": "a"}) + "\n" + json.dumps(long) + "\n")
    task = {"name": "t", "data": str(train), "test_data": str(test), "initial_prompt": "Answer."}
    assert main(["optimize", str(window_job(tmp_path, task)), "--out", str(tmp_path / "r")]) == 2
    line = one_line(capsys, "optimize")
    assert line.startswith(f"pmpo optimize: error: {test}: request")
    assert "example 'heldout-2'" in line and "over the model's window of 40" in line


def test_evaluate_names_a_data_file_that_has_moved_before_the_engine_loads(
    tmp_path, capsys, monkeypatch
):
    data = tmp_path / "navigate.json"
    shutil.copy(SAMPLES_DIR / "bbh" / "navigate.json", data)
    job = job_yaml(tmp_path, {**NAVIGATE, "data": str(data)})
    run = tmp_path / "run"
    assert main(["optimize", str(job), "--out", str(run)]) == 0
    data.rename(tmp_path / "moved.json")
    capsys.readouterr()
    replace_open_engines(monkeypatch, no_engines)
    assert main(["evaluate", str(run)]) == 2
    line = one_line(capsys, "evaluate")
    assert f"{run / 'config.yaml'}: task 'navigate': field 'data': {data}: missing" in line
    assert not (run / layout.EVALUATION).exists()


def test_study_resume_with_nothing_to_resume_fails_before_engines(tmp_path, monkeypatch):
    monkeypatch.setattr("pmpo_ray.studies.run.suite_engines", no_engines)
    with pytest.raises(ValueError, match="nothing to resume"):
        run_study(study_config(scorer=SIMULATED), out=tmp_path / "study", resume=True)
    assert not (tmp_path / "study").exists()


def test_study_refuses_an_existing_out_that_is_not_a_study(tmp_path, monkeypatch):
    monkeypatch.setattr("pmpo_ray.studies.run.suite_engines", no_engines)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for flags in ({}, {"overwrite": True}):
        with pytest.raises(ValueError, match="exists and is not a study"):
            run_study(study_config(scorer=SIMULATED), out=out, **flags)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ----- small items ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["./models/gone", "/no/such/model", "~/no-such-model-pmpo"])
def test_a_missing_model_path_says_no_such_folder(name):
    for find in (resolve_model_path, local_model_folder):
        with pytest.raises(ModelNotFoundError, match="no such folder"):
            find(ModelConfig(name=name, allow_download=True))


def test_a_hub_id_is_still_looked_up_on_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="not a local folder"):
        resolve_model_path(ModelConfig(name="someone/never-cached-model"))


@pytest.mark.parametrize("name", ["examples", "examples.jsonl"])
def test_a_directory_as_data_is_called_a_directory(tmp_path, capsys, name):
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        load_examples(folder)
    out = str(tmp_path / "s.parquet")
    args = ["score", "--prompt", "p", "--data", str(folder), "--out", out, "--backend", "simulated"]
    assert main(args) == 2
    assert f"{folder}: is a directory" in one_line(capsys, "score")


def test_a_missing_relative_data_path_hints_at_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        load_task(TaskConfig(name="t", data="data/train.jsonl", initial_prompt="p"))
    message = str(error.value)
    assert "field 'data': data/train.jsonl: missing" in message
    assert str(tmp_path) in message and "data_root" in message


def test_a_suite_with_a_missing_relative_path_hints_at_data_root(tmp_path, monkeypatch):
    replace_open_engines(monkeypatch, no_engines)
    monkeypatch.chdir(tmp_path)
    config = suite_config(data="bbh/navigate.json")
    with pytest.raises(DataError, match="data_root"):
        pmpo_ray.optimize_suite(config, out=tmp_path / "out")


def test_no_iterations_asks_for_no_generation():
    task = TaskConfig(**NAVIGATE)
    optimizer = OptimizerConfig(iterations=0, hard_cases=1)
    result = pmpo_ray.optimize(task, optimizer=optimizer, scorer=SimulatedConfig())
    assert result.stop_reason == "no iterations configured"
    assert result.work.generation_requests == 0 and result.work.tokens_generated == 0
    assert result.work.forward_passes == 4  # the initial prompt on 4 examples, no masking


def test_the_stop_reason_does_not_repeat_the_iteration_count(tmp_path, capsys):
    assert main(["optimize", str(job_yaml(tmp_path)), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "(1 iteration, iteration limit reached)" in out
    assert "iterations" not in out.splitlines()[0]
