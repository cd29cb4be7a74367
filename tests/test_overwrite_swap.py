"""--overwrite never deletes results before their replacement exists: a failed or interrupted
run leaves the previous results byte for byte, --resume continues the staged run, a finished
one swaps in, a swap cut short is finished later, and a user's files are never removed."""

import json

import pytest

import pmpo_ray
from pmpo_ray.run_folder import layout, swap
from pmpo_ray.run_folder.read import read_run_folder
from tests.failures import EngineDown, FailingEngine, folder_bytes, suite_config


@pytest.fixture
def finished(tmp_path):
    """A finished, evaluated suite run, with a user's files beside and inside its results."""
    out = tmp_path / "suite"
    pmpo_ray.optimize_suite(suite_config(), out=out, evaluate=True, engines=FailingEngine())
    (out / "report.md").write_text("# the old run's report\n")
    (out / "notes.txt").write_text("mine")
    (out / "tasks" / "notes.txt").write_text("mine too")
    (out / "tasks" / "scratch").mkdir()
    (out / "tasks" / "scratch" / "data.json").write_text("{}")
    return out


def test_a_failed_overwrite_leaves_the_previous_results_byte_identical(finished):
    before = folder_bytes(finished)
    engine = FailingEngine(fail_on=2)  # the new run dies in its second scored round
    with pytest.raises(EngineDown):
        pmpo_ray.optimize_suite(suite_config(seed=5), out=finished, overwrite=True, engines=engine)
    assert len(engine.score_calls) == 2  # it did run, and checkpointed, before failing
    assert folder_bytes(finished, skip=layout.OVERWRITE_STAGING) == before
    assert layout.state_files(layout.overwrite_staging_dir(finished))  # kept for --resume
    # The old results still read and evaluate as a run.
    assert {t.task_id for t in read_run_folder(finished).tasks} == {"navigate", "pairs"}


def test_resume_continues_the_staged_run_and_swaps_it_in(finished):
    old_summary = json.loads((finished / "suite.json").read_text())
    with pytest.raises(EngineDown):
        pmpo_ray.optimize_suite(
            suite_config(seed=5), out=finished, overwrite=True, engines=FailingEngine(2)
        )
    engine = FailingEngine()
    result = pmpo_ray.optimize_suite(
        suite_config(seed=5), out=finished, resume=True, engines=engine
    )
    assert len(engine.score_calls) < 3  # resumed: the rounds done before the failure stay done
    assert not layout.overwrite_staging_dir(finished).exists()
    summary = json.loads((finished / "suite.json").read_text())
    assert summary == json.loads(json.dumps(result.summary)) and summary != old_summary
    config = (finished / "tasks" / "navigate" / "config.yaml").read_text()
    assert "seed: 5" in config
    # The old run's evaluation and report described the old results: gone with them.
    assert not (finished / "tasks" / "navigate" / "evaluation.json").exists()
    assert not (finished / "report.md").exists()
    # The user's files stay where they were.
    assert (finished / "notes.txt").read_text() == "mine"
    assert (finished / "tasks" / "notes.txt").read_text() == "mine too"
    assert (finished / "tasks" / "scratch" / "data.json").read_text() == "{}"


def test_a_finished_overwrite_replaces_only_the_projects_files(finished):
    one_task = suite_config(seed=3)
    one_task["tasks"] = one_task["tasks"][:1]
    pmpo_ray.optimize_suite(one_task, out=finished, overwrite=True, engines=FailingEngine())
    left = {str(p.relative_to(finished)) for p in finished.rglob("*")}
    assert "tasks/pairs" not in left  # a task the new suite dropped: the old run's folder
    assert {"notes.txt", "tasks/notes.txt", "tasks/scratch/data.json"} <= left
    assert not any(name.startswith(".") for name in left)  # no staging, manifest or temp left
    rounds = [json.loads(line) for line in (finished / "rounds.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rounds] == list(range(1, len(rounds) + 1))  # new log only
    assert list(json.loads((finished / "suite.json").read_text())) == ["navigate"]


def test_a_swap_cut_short_is_finished_by_the_next_command(finished, monkeypatch):
    removed = []
    real_remove = swap._remove

    def killed_after_three(path):
        if len(removed) == 3:
            raise KeyboardInterrupt("job killed mid-swap")
        removed.append(path)
        real_remove(path)

    monkeypatch.setattr(swap, "_remove", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        pmpo_ray.optimize_suite(
            suite_config(seed=5), out=finished, overwrite=True, engines=FailingEngine()
        )
    monkeypatch.setattr(swap, "_remove", real_remove)
    assert not (finished / "suite.json").exists()  # removed first: never looks finished half-way
    assert layout.swap_manifest_path(finished).is_file()

    results = pmpo_ray.evaluate(finished, engines=FailingEngine())  # finishes the swap first
    assert not layout.overwrite_staging_dir(finished).exists()
    assert set(results) == {"navigate", "pairs"}
    assert "seed: 5" in (finished / "tasks" / "pairs" / "config.yaml").read_text()
    assert (finished / "notes.txt").read_text() == "mine"


def test_a_users_folder_named_like_a_task_stops_the_job_before_it_starts(tmp_path):
    out = tmp_path / "suite"
    (out / "tasks" / "navigate").mkdir(parents=True)
    (out / "tasks" / "navigate" / "draft.txt").write_text("mine")
    engine = FailingEngine()
    with pytest.raises(ValueError, match=r"tasks/navigate exists and is not a task run"):
        pmpo_ray.optimize_suite(suite_config(), out=out, overwrite=True, engines=engine)
    assert engine.score_calls == [] and (out / "tasks" / "navigate" / "draft.txt").is_file()
