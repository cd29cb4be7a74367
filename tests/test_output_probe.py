"""Outputs that cannot be written fail before any engine starts, and results that still cannot
be written at the end are kept in the system temp folder, named in the error."""

import contextlib
import os
import shutil
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pmpo_ray.cli import main
from pmpo_ray.store import (
    atomic_write_json,
    atomic_write_text,
    check_writable,
    check_writable_folder,
    write_or_keep,
)
from tests.failures import ONE_ROUND as OPTIMIZER
from tests.failures import SMALL_TASK as TASK
from tests.failures import finished_task_run, replace_open_engines
from tests.fakes import FakeEngine, scripted_rewrites


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits, so it gets
    /sys, which refuses new files even to root)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        yield folder
        folder.chmod(stat.S_IRWXU)
        return
    try:
        check_writable_folder(Path("/sys"))
    except ValueError:
        yield Path("/sys")
        return
    pytest.skip("no folder this root process cannot write")


@pytest.fixture
def no_engines(monkeypatch):
    """Any engine start fails the test: the point is to fail before one."""

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was opened")

    replace_open_engines(monkeypatch, refuse)


@pytest.fixture
def job_yaml(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"task": TASK, "optimizer": OPTIMIZER}))
    return path


def test_probe_names_the_folder_that_refuses_files(unwritable):
    with pytest.raises(ValueError, match=f"folder {unwritable} is not writable"):
        check_writable(unwritable / "scores.parquet")
    with pytest.raises(ValueError, match=f"folder {unwritable} is not writable"):
        check_writable_folder(unwritable / "run")
    assert not list(Path(unwritable).glob(".pmpo-write-probe*"))


def test_probe_rejects_a_folder_as_a_file_and_a_missing_parent(tmp_path):
    with pytest.raises(ValueError, match="is a folder; name a file"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match=f"folder {tmp_path / 'no'} does not exist"):
        check_writable_folder(tmp_path / "no" / "run")
    check_writable_folder(tmp_path / "run")  # a new folder in a writable one is fine
    check_writable_folder(tmp_path)  # so is an existing writable folder
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


@pytest.mark.parametrize(
    "argv",
    [
        ["optimize", "{job}", "--out", "{bad}/run"],
        ["suite", "{suite}", "--out", "{bad}/run"],
        ["score", "--prompt", "p", "--data", "{data}", "--out", "{bad}/scores.parquet"],
    ],
    ids=["optimize", "suite", "score"],
)
def test_commands_fail_on_an_unwritable_output_before_any_engine(
    argv, tmp_path, unwritable, job_yaml, no_engines, capsys
):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "tasks": [{"task": TASK}]}))
    data = tmp_path / "d.jsonl"
    data.write_text('{"input": "2+2", "target": "4"}\n')
    names = {"job": job_yaml, "suite": suite, "data": data, "bad": unwritable}
    code = main([part.format(**names) for part in argv])
    assert code == 2
    assert f"folder {unwritable} is not writable" in capsys.readouterr().err


def test_score_out_naming_a_folder_fails_before_scoring(tmp_path, no_engines, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"input": "2+2", "target": "4"}\n')
    code = main(["score", "--prompt", "p", "--data", str(data), "--out", str(tmp_path)])
    assert code == 2
    assert f"{tmp_path}: is a folder" in capsys.readouterr().err


def test_evaluate_probes_the_task_folder_before_the_engine(tmp_path, monkeypatch, capsys):
    finished_task_run(tmp_path / "run")

    def refuse(path):  # what a read-only mount answers, even to root
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pmpo_ray.store._create_beside", refuse)
    replace_open_engines(monkeypatch, refuse)
    code = main(["evaluate", str(tmp_path / "run")])
    assert code == 2
    assert f"folder {tmp_path / 'run'} is not writable" in capsys.readouterr().err


def kept_path(error: str) -> Path:
    """The fallback path an error message names; its temp folder is removed after the test."""
    return Path(error.rsplit("saved to ", 1)[1].split(" instead")[0])


def test_write_or_keep_saves_to_the_temp_folder_and_names_it(tmp_path):
    target = tmp_path / "gone" / "result.json"  # the folder vanished during the run

    with pytest.raises(ValueError) as error:
        write_or_keep(target, lambda path: atomic_write_json({"loss": 1.5}, path), "results")
    message = str(error.value)
    assert message.startswith(f"{target}: cannot write the results (")
    kept = kept_path(message)
    assert kept.name == "result.json" and kept.read_text().strip().startswith("{")
    shutil.rmtree(kept.parent)


def fake_engines(remove: Path):
    """open_engines stand-in: a scripted engine; `remove` vanishes while it runs, as a
    network mount or a cleaned-up scratch folder can."""

    @contextlib.contextmanager
    def opened(*args, **kwargs):
        remove.rmdir()
        yield FakeEngine(scripted_rewrites)

    return opened


def test_optimize_keeps_its_results_when_the_run_folder_cannot_be_written(
    tmp_path, job_yaml, monkeypatch, capsys
):
    parent = tmp_path / "runs"
    parent.mkdir()
    replace_open_engines(monkeypatch, fake_engines(parent))
    code = main(["optimize", str(job_yaml), "--out", str(parent / "navigate")])
    assert code == 2
    error = capsys.readouterr().err
    assert f"{parent / 'navigate'}: cannot write the run folder" in error
    kept = kept_path(error)
    assert (kept / "result.json").is_file() and (kept / "best_prompt.txt").is_file()
    shutil.rmtree(kept.parent)


def test_score_keeps_its_table_when_the_output_cannot_be_written(tmp_path, monkeypatch, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"input": "2+2", "target": "4"}\n{"input": "3+3", "target": "6"}\n')
    out_dir = tmp_path / "scores"
    out_dir.mkdir()
    replace_open_engines(monkeypatch, fake_engines(out_dir))
    monkeypatch.setattr("pmpo_ray.commands.score.check_rows_fit", lambda *args: None)
    code = main(["score", "--prompt", "p", "--data", str(data), "--out", str(out_dir / "s.pq")])
    assert code == 2
    error = capsys.readouterr().err
    kept = kept_path(error)
    assert pq.read_table(kept).num_rows == 2
    shutil.rmtree(kept.parent)


def test_result_files_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text("x", tmp_path / "a.txt")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
