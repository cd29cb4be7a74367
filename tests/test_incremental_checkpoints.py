"""Checkpoints hold what each round changed, not the whole run: the bytes per round stay flat
as the history grows, and replaying them resumes a run (in cohorts, from any round, from the
older whole-state files too) to exactly the results of a run that never stopped."""

import json

import pytest

from pmpo_ray.pmpo.checkpoint import apply, changes, snapshot
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.run_folder import layout
from pmpo_ray.suite.checkpoints import SuiteCheckpoints
from pmpo_ray.suite.resume_point import full_checkpoint_sizes
from tests.fakes import FakeEngine, TimedClient, scripted_rewrites
from tests.test_overlap import baseline, make_runs
from tests.test_resume import Crash, comparable


def overlapping_client():
    return TimedClient(FakeEngine(scripted_rewrites), concurrent_jobs=True)


def run_with_checkpoints(out, runs, *, cohorts=2, crash_at=None, rounds_done=0, manager=None):
    manager = manager or SuiteCheckpoints(runs, out)

    def on_round(index, advanced, stats):
        manager.on_round(index, advanced, stats)
        if index == crash_at:
            raise Crash(f"stopped after round {index}")

    client = overlapping_client()
    return run_rounds(
        runs,
        generator=client,
        scorer=client,
        on_round=on_round,
        cohorts=cohorts,
        rounds_done=rounds_done,
    )


def resume(out, n_tasks, **kwargs):
    runs = make_runs(n_tasks, **kwargs)
    manager = SuiteCheckpoints(runs, out)
    done = manager.resume()
    return run_with_checkpoints(out, runs, rounds_done=done, manager=manager)


def test_changes_replay_to_the_snapshot():
    [run] = make_runs(1)
    client = overlapping_client()
    before = None
    states = []

    def record(index, advanced, stats):
        nonlocal before
        after = snapshot(run)
        entry = changes(before, after)
        states.append(apply(states[-1] if states else None, entry))
        assert states[-1] == after
        if before is not None:  # later entries carry only what grew, never the whole history
            assert "history" not in entry and "lineage" not in entry
        before = after

    run_rounds([run], generator=client, scorer=client, on_round=record)
    assert len(states) >= 3


def test_bytes_per_round_stay_flat_while_the_whole_state_grows(tmp_path):
    runs = make_runs(4, iterations=12)
    run_with_checkpoints(tmp_path, runs)
    log = [json.loads(line) for line in layout.rounds_log_path(tmp_path).open()]
    written = [row["checkpoint_bytes"] for row in log]
    assert written == [path.stat().st_size for path in layout.state_files(tmp_path)]
    whole = full_checkpoint_sizes(tmp_path)
    assert whole[-1] > 3 * whole[1]  # a whole-state checkpoint grows with the history...
    late = written[len(written) // 2 :]
    assert max(late) < whole[-1] / 4  # ...what is written per round does not
    assert sum(written) < sum(whole) / 4


@pytest.mark.parametrize("crash_at", [1, 2, 3, 5, 8])
def test_a_run_in_cohorts_resumes_from_any_round_to_the_same_results(tmp_path, crash_at):
    with pytest.raises(Crash):
        run_with_checkpoints(tmp_path, make_runs(5), crash_at=crash_at)
    results = resume(tmp_path, 5)
    assert [comparable(r) for r in results] == baseline(5)
    rounds = [json.loads(line)["round"] for line in layout.rounds_log_path(tmp_path).open()]
    assert rounds == list(range(1, len(rounds) + 1))


def test_whole_state_checkpoints_of_older_versions_resume(tmp_path):
    runs = make_runs(3)
    fingerprints = SuiteCheckpoints(runs, tmp_path).fingerprints

    def whole_state(index, advanced, stats):  # as checkpoints were written before
        state = {
            "round": index,
            "fingerprints": fingerprints,
            "tasks": {r.task.task_id: {"iterations": len(r.history), **snapshot(r)} for r in runs},
        }
        layout.state_path(tmp_path, index).write_text(json.dumps(state))
        if index == 3:
            raise Crash("stopped")

    engine = FakeEngine(scripted_rewrites)
    with pytest.raises(Crash):
        run_rounds(runs, generator=engine, scorer=engine, on_round=whole_state)
    assert not layout.state_run_path(tmp_path).exists()
    assert [comparable(r) for r in resume(tmp_path, 3)] == baseline(3)


def test_a_missing_round_ends_the_replay_and_later_rounds_are_run_again(tmp_path, capsys):
    with pytest.raises(Crash):
        run_with_checkpoints(tmp_path, make_runs(4), crash_at=5)
    layout.state_path(tmp_path, 3).unlink()
    capsys.readouterr()
    results = resume(tmp_path, 4)
    printed = capsys.readouterr()
    assert "checkpoint of round 3 is missing" in printed.err
    assert f"resumed from {layout.state_path(tmp_path, 2)} (round 2)" in printed.out
    assert [comparable(r) for r in results] == baseline(4)
