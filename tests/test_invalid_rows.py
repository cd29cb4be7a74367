"""`invalid_rows: skip` leaves out rows a format cannot use (as public BBH files have), counts
them by reason, and carries the counts into the task's result.json; `error` stays the default
and says how to skip."""

import json

import pytest

from pmpo_ray.jobs import OptimizeJobConfig
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.pmpo.task_run import TaskRun
from pmpo_ray.run_folder.write import write_task_run
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.formats import DataError
from pmpo_ray.tasks.task import load_task
from tests.fakes import FakeEngine, scripted_rewrites

OPTIONS = "\nOptions:\n(A) Yes\n(B) No"


def bbh_file(path, n_good: int, bad_targets: list[str]):
    """A BBH-layout file: `n_good` valid rows, then one row per bad target."""
    rows = [
        {"input": f"{path.stem} question {i}?{OPTIONS}", "target": "(A)"} for i in range(n_good)
    ]
    rows += [{"input": f"Odd {i}?{OPTIONS}", "target": t} for i, t in enumerate(bad_targets)]
    path.write_text(json.dumps({"examples": rows}))
    return path


def task_config(path, **fields) -> TaskConfig:
    return TaskConfig(
        name="bbh", data=str(path), format="multiple_choice", initial_prompt="Answer.", **fields
    )


def test_default_is_an_error_that_names_the_row_and_the_setting(tmp_path):
    path = bbh_file(tmp_path / "t.json", 10, ["(C)"])
    with pytest.raises(DataError) as error:
        load_task(task_config(path))
    message = str(error.value)
    assert f"task 'bbh': {path}: row 11: target '(C)' matches no option" in message
    assert "set `invalid_rows: skip` in the task config" in message


def test_skip_leaves_rows_out_and_counts_them_by_reason(tmp_path, caplog):
    path = bbh_file(tmp_path / "t.json", 10, ["(C)", "(D)", ""])
    task = load_task(task_config(path, invalid_rows="skip"))
    assert len(task.train) + len(task.test) == 10
    assert all("Odd" not in e.input for e in task.train + task.test)
    assert dict(task.skipped_rows) == {
        "target matches no option": 2,
        "field 'target' is empty": 1,
    }
    assert "left out invalid rows: target matches no option: 2 rows" in caplog.text


def test_skipped_counts_cover_test_data_too(tmp_path):
    train = bbh_file(tmp_path / "train.json", 6, ["(C)"])
    test = bbh_file(tmp_path / "test.json", 4, ["(E)", "(F)"])
    task = load_task(task_config(train, test_data=str(test), invalid_rows="skip"))
    assert (len(task.train), len(task.test)) == (6, 4)
    assert dict(task.skipped_rows) == {"target matches no option": 3}


def test_a_file_with_no_valid_row_is_still_an_error(tmp_path):
    path = bbh_file(tmp_path / "t.json", 0, ["(C)", "(D)"])
    with pytest.raises(DataError, match="no valid examples; every row was skipped"):
        load_task(task_config(path, invalid_rows="skip"))


def test_problems_of_the_whole_file_are_not_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2 #### 2"}\n' * 3)
    config = TaskConfig(
        name="g",
        data=str(path),
        layout="gsm8k",
        format="multiple_choice",
        initial_prompt="p",
        invalid_rows="skip",
    )
    with pytest.raises(DataError, match="layout 'gsm8k' only gives supervised"):
        load_task(config)


def test_unknown_setting_is_a_config_error():
    with pytest.raises(ValueError, match="invalid_rows"):
        TaskConfig(name="x", data="d.json", initial_prompt="p", invalid_rows="ignore")


def test_skipped_counts_reach_result_json(tmp_path):
    path = bbh_file(tmp_path / "t.json", 12, ["(C)", "(Z)"])
    config = OptimizeJobConfig.model_validate(
        {
            "task": task_config(path, invalid_rows="skip").model_dump(),
            "optimizer": {"iterations": 1, "hard_cases": 1, "rewrites_per_case": 1},
        }
    )
    engine = FakeEngine(scripted_rewrites)
    task = load_task(config.task)
    run = TaskRun(task, config.optimizer, engine.count_tokens, config.prompt_format)
    [result] = run_rounds([run], rewriter=engine, scorer=engine)
    write_task_run(result, tmp_path / "run", config)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["skipped_rows"] == {"target matches no option": 2}


def test_a_task_run_folder_gets_the_mode_mkdir_would_give(tmp_path):
    """Run folders are staged in a temporary folder (0700) before they move in."""
    import os
    import stat

    path = bbh_file(tmp_path / "t.json", 30, [])
    config = OptimizeJobConfig.model_validate(
        {"task": task_config(path).model_dump(), "optimizer": {"iterations": 1}}
    )
    engine = FakeEngine(scripted_rewrites)
    run = TaskRun(
        load_task(config.task), config.optimizer, engine.count_tokens, config.prompt_format
    )
    [result] = run_rounds([run], rewriter=engine, scorer=engine)
    old = os.umask(0o022)
    try:
        write_task_run(result, tmp_path / "run", config)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
