"""--resume cannot mix runs: a checkpoint records each task's settings and data, and another data
file or other settings are refused in one line naming what changed, before any engine call;
what may change (iterations, evaluation, where the data lies) does not count. A truncated
last checkpoint is named in a warning and the round before it is used."""

import json
import shutil

import pytest

import pmpo_ray
from pmpo_ray.run_folder import layout
from pmpo_ray.tasks.example_files import SAMPLES_DIR
from tests.failures import EngineDown, FailingEngine, suite_config
from tests.test_resume import comparable


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data" / "navigate.json"
    path.parent.mkdir()
    shutil.copy(SAMPLES_DIR / "bbh" / "navigate.json", path)
    return path


def crashed_run(out, data_file, fail_on=2):
    """A suite run of `data_file` that lost its engine on scoring call `fail_on`."""
    with pytest.raises(EngineDown):
        pmpo_ray.optimize_suite(
            suite_config(data=str(data_file)), out=out, engines=FailingEngine(fail_on)
        )
    assert layout.state_files(out)


def test_resume_with_another_data_file_is_refused_naming_the_task(tmp_path, data_file):
    out = tmp_path / "suite"
    crashed_run(out, data_file)
    other = tmp_path / "other.json"
    raw = json.loads(data_file.read_text())
    raw["examples"] = raw["examples"][:-1]  # one example fewer: another data file
    other.write_text(json.dumps(raw))
    engine = FailingEngine()
    with pytest.raises(ValueError) as refused:
        pmpo_ray.optimize_suite(suite_config(data=str(other)), out=out, resume=True, engines=engine)
    message = str(refused.value)
    assert "cannot resume another run" in message and "\n" not in message
    assert "task 'navigate': its data" in message and "'pairs'" not in message
    assert engine.score_calls == [] and engine.generate_calls == []  # refused before any call


def test_resume_with_other_settings_is_refused_naming_the_fields(tmp_path, data_file):
    out = tmp_path / "suite"
    crashed_run(out, data_file)
    changed = suite_config(data=str(data_file), seed=9)
    changed["tasks"][1]["task"]["description"] = "Pick the better answer."
    with pytest.raises(ValueError) as refused:
        pmpo_ray.optimize_suite(changed, out=out, resume=True, engines=FailingEngine())
    message = str(refused.value)
    assert "task 'navigate': optimizer.seed" in message
    assert "task 'pairs': optimizer.seed, task.description" in message
    assert "its data" not in message


def test_iterations_evaluation_replicas_and_the_data_files_place_may_change(tmp_path, data_file):
    out = tmp_path / "suite"
    crashed_run(out, data_file)
    moved = tmp_path / "moved.json"
    data_file.rename(moved)  # the same examples, elsewhere (another mount on a cluster)
    config = suite_config(data=str(moved), iterations=3)
    config["evaluation"] = {"max_examples": 2, "accuracy": False}
    # more replicas after a crash compute the same rows (the pools are part of the job config)
    config["scorer"] = {"replicas": {"num_replicas": 4, "num_cpus": 0.5}}
    result = pmpo_ray.optimize_suite(config, out=out, resume=True, engines=FailingEngine())
    assert (out / "suite.json").is_file() and len(result.results) == 2


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_last_checkpoint_falls_back_to_the_round_before(
    tmp_path, data_file, capsys, damage
):
    expected = pmpo_ray.optimize_suite(
        suite_config(data=str(data_file)), out=tmp_path / "whole", engines=FailingEngine()
    )
    out = tmp_path / "suite"
    crashed_run(out, data_file, fail_on=3)
    *_, before_last, last = layout.state_files(out)
    text = last.read_text()
    last.write_text(text[: len(text) // 2] if damage == "truncated" else "")
    capsys.readouterr()

    result = pmpo_ray.optimize_suite(
        suite_config(data=str(data_file)), out=out, resume=True, engines=FailingEngine()
    )
    printed = capsys.readouterr()
    assert f"warning: checkpoint {last} is truncated or unreadable" in printed.err
    assert f"falling back to the last intact checkpoint, {before_last}" in printed.err
    assert f"resumed from {before_last}" in printed.out
    assert [comparable(r) for r in result.results] == [comparable(r) for r in expected.results]
    json.loads(last.read_text())  # the damaged round was run again and written whole
    rounds = [json.loads(line)["round"] for line in layout.rounds_log_path(out).open()]
    assert rounds == list(range(1, len(rounds) + 1))  # no round logged twice


@pytest.mark.parametrize("record", [None, {"fingerprints": {}}, {"run_folder_format": 0}])
def test_checkpoints_of_another_format_are_refused_in_one_line(tmp_path, data_file, record):
    """Checkpoints without state/run.json's format marker (or with another) were written by
    another pmpo-ray version: refused before any engine starts, saying so."""
    out = tmp_path / "suite"
    crashed_run(out, data_file)
    run_record = layout.state_run_path(out)
    if record is None:
        run_record.unlink()
    else:
        run_record.write_text(json.dumps(record))
    with pytest.raises(ValueError) as error:
        pmpo_ray.optimize_suite(
            suite_config(data=str(data_file)), out=out, resume=True, engines=FailingEngine()
        )
    message = str(error.value)
    assert "checkpoints written by another pmpo-ray version" in message
    assert "start a new --out" in message and len(message.splitlines()) == 1
