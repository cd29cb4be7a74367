"""`data_root`: a suite's relative local task files are read from a folder given at run time;
'builtin:' and 'hf:' sources and absolute paths are used as written, and without data_root
nothing changes. A missing folder or file fails in one line, naming task, field and path,
before any engine starts. No engine: the suite runs use the scripted engine of tests/failures.py."""

import argparse
import json
import shutil

import pytest
import yaml

import pmpo_ray
from pmpo_ray.commands.suite import suite_config as cli_suite_config
from pmpo_ray.config import as_config
from pmpo_ray.jobs import SuiteConfig
from pmpo_ray.tasks.example_files import SAMPLES_DIR
from tests.failures import FailingEngine, suite_config

BBH_SAMPLES = SAMPLES_DIR / "bbh"


def task(name: str, data: str, **fields) -> dict:
    return {"task": {"name": name, "data": data, "initial_prompt": "Answer.", **fields}}


@pytest.fixture
def root(tmp_path):
    """A data folder holding navigate.json and held_out/navigate.json."""
    folder = tmp_path / "bbh"
    (folder / "held_out").mkdir(parents=True)
    shutil.copy(BBH_SAMPLES / "navigate.json", folder / "navigate.json")
    shutil.copy(BBH_SAMPLES / "navigate.json", folder / "held_out" / "navigate.json")
    return folder


def resolved(raw_tasks: list[dict], data_root, flags=None) -> dict[str, dict]:
    """Task name -> {data, test_data} after validation with `data_root` set."""
    config = as_config(
        SuiteConfig, {"name": "s", "tasks": raw_tasks}, {"data_root": data_root}, flags=flags
    )
    return {e.task.name: {"data": e.task.data, "test_data": e.task.test_data} for e in config.tasks}


def test_relative_paths_are_read_from_the_root_and_other_sources_are_left_alone(root):
    absolute = str(BBH_SAMPLES / "navigate.json")
    paths = resolved(
        [
            task("relative", "navigate.json", test_data="held_out/navigate.json"),
            task("absolute", absolute, test_data="hf:lukaemon/bbh:test"),
            task("builtin", "builtin:bbh/navigate.json"),
            task("hub", "hf:lukaemon/bbh", data_config="navigate"),
            task("home", "~/somewhere/navigate.json"),  # absolute once ~ is expanded
        ],
        str(root),
    )
    assert paths["relative"] == {
        "data": str(root / "navigate.json"),
        "test_data": str(root / "held_out" / "navigate.json"),
    }
    assert paths["absolute"] == {"data": absolute, "test_data": "hf:lukaemon/bbh:test"}
    assert paths["builtin"]["data"] == "builtin:bbh/navigate.json"
    assert paths["hub"]["data"] == "hf:lukaemon/bbh"
    assert paths["home"]["data"] == "~/somewhere/navigate.json"


def test_without_a_root_paths_stay_as_written(tmp_path):
    config = as_config(SuiteConfig, {"name": "s", "tasks": [task("t", "missing/navigate.json")]})
    assert config.data_root is None
    assert config.tasks[0].task.data == "missing/navigate.json"  # read from the cwd at load


def test_a_relative_root_is_read_from_the_working_directory(root, monkeypatch):
    monkeypatch.chdir(root.parent)
    config = as_config(
        SuiteConfig, {"name": "s", "tasks": [task("t", "navigate.json")]}, {"data_root": "bbh"}
    )
    assert config.data_root == root.resolve()
    assert config.tasks[0].task.data == str(root.resolve() / "navigate.json")


def test_a_resolved_config_validates_again_unchanged(root):
    config = as_config(
        SuiteConfig, {"name": "s", "tasks": [task("t", "navigate.json")]}, {"data_root": root}
    )
    assert as_config(SuiteConfig, config.model_dump(mode="json")) == config


def test_a_missing_root_is_one_line_naming_the_flag_and_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError) as error:
        resolved([task("t", "navigate.json")], str(missing), {"data_root": "--set data_root"})
    message = str(error.value)
    assert message == f"--set data_root: no such folder: {missing}; got '{missing}'"


def test_a_missing_file_names_the_task_the_field_and_the_resolved_path(root):
    with pytest.raises(ValueError) as error:
        resolved(
            [
                task("navigate", "navigate.json"),
                task("snarks", "snarks.json", test_data="held_out/snarks.json"),
            ],
            str(root),
        )
    message = str(error.value)
    assert "\n" not in message
    assert "task 'snarks': field 'data' (snarks.json under data_root): no such file " in message
    assert str(root / "snarks.json") in message
    assert "task 'snarks': field 'test_data' (held_out/snarks.json under data_root)" in message
    assert str(root / "held_out" / "snarks.json") in message
    assert "'navigate'" not in message


def test_a_root_lacking_many_files_names_five_and_counts_the_rest(root):
    tasks = [task(f"t{i}", f"t{i}.json") for i in range(8)]
    with pytest.raises(ValueError) as error:
        resolved(tasks, str(root))
    message = str(error.value)
    assert "task 't4'" in message and "task 't5'" not in message
    assert message.endswith(f"and 3 more file(s) missing under {root}")


def test_the_command_line_sets_data_root(root, tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "tasks": [task("navigate", "navigate.json")]}))
    args = argparse.Namespace(config=path, set=[f"data_root={root}"], iterations=None)
    config = cli_suite_config(args)  # what `pmpo suite` and pipelines.optimize_suite run
    assert config.tasks[0].task.data == str(root / "navigate.json")


@pytest.mark.parametrize("entry", ["pmpo suite", "optimize_suite"])
def test_a_missing_root_on_the_command_line_fails_before_anything_runs(tmp_path, capsys, entry):
    from pipelines.optimize_suite import main as pipeline_main
    from pmpo_ray.cli import main as pmpo_main

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "tasks": [task("navigate", "navigate.json")]}))
    out, gone = tmp_path / "out", tmp_path / "gone"
    options = ["--out", str(out), "--set", f"data_root={gone}"]
    if entry == "pmpo suite":
        code = pmpo_main(["suite", str(path), *options])
    else:
        code = pipeline_main(["--config", str(path), *options])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error == f"{entry}: error: --set data_root: no such folder: {gone}; got '{gone}'"
    assert not out.exists()


def run_with_root(data_root, out, **options):
    return pmpo_ray.optimize_suite(
        suite_config(data="navigate.json"),
        out=out,
        overrides={"data_root": str(data_root)},
        engines=options.pop("engines", FailingEngine()),
        **options,
    )


def test_a_suite_reads_its_data_from_the_root_and_records_the_file(root, tmp_path):
    out = tmp_path / "run"
    run_with_root(root, out)
    job = yaml.safe_load((out / "tasks" / "navigate" / "config.yaml").read_text())
    assert job["task"]["data"] == str(root / "navigate.json")  # evaluates on its own
    builtin = yaml.safe_load((out / "tasks" / "pairs" / "config.yaml").read_text())
    assert builtin["task"]["data"] == "builtin:alpaca_eval/pairs_short.jsonl"


def test_resume_sees_the_data_the_root_holds(root, tmp_path):
    from tests.failures import EngineDown

    out = tmp_path / "run"
    with pytest.raises(EngineDown):
        run_with_root(root, out, engines=FailingEngine(fail_on=2))
    other = tmp_path / "other"
    other.mkdir()
    raw = json.loads((root / "navigate.json").read_text())
    raw["examples"] = raw["examples"][:-1]  # another navigate.json: one example fewer
    (other / "navigate.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="task 'navigate': its data"):
        run_with_root(other, out, resume=True)
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)  # the same files elsewhere (another mount): resumes
    result = run_with_root(moved, out, resume=True)
    assert len(result.results) == 2
