"""Checkpoints hold what each round changed, not the whole run: the bytes per round stay flat
as the history grows, and replaying them resumes a run (in cohorts, from any round, from the
older whole-state files too) to exactly the results of a run that never stopped."""

import json

import pytest

from pmpo_ray.pmpo.checkpoint import GROWING, STATE_FIELDS, apply, entry_since, snapshot
from pmpo_ray.pmpo.rounds import run_rounds
from pmpo_ray.run_folder import layout
from pmpo_ray.suite.checkpoints import SuiteCheckpoints
from pmpo_ray.suite.resume_point import full_checkpoint_sizes, read_resume_point
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
    with manager:  # the rounds that finished are on disk when it returns, or raises
        return run_rounds(
            runs,
            rewriter=client,
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


def reference_changes(before: dict | None, after: dict) -> dict:
    """The entry as checkpoints were written before they diffed states by identity: two whole
    snapshots compared field by field. The files must not tell the two apart."""
    if before is None:
        return dict(after)
    entry = {"task_id": after["task_id"]}
    for name in STATE_FIELDS:
        if name in GROWING:
            old, new = before[name], after[name]
            kind = GROWING[name]
            if kind == "list":
                added = new[len(old) :]
            elif kind == "dict":
                added = {key: value for key, value in new.items() if key not in old}
            else:
                added = sorted(set(new) - set(old))
            if added:
                entry[name + "+"] = added
        elif before[name] != after[name]:
            entry[name] = after[name]
    return entry


class ReferenceWriter:
    """Round files as the driver wrote them before, from whole snapshots, kept as text."""

    def __init__(self, written: dict | None = None):
        self.written = dict(written or {})  # task id -> snapshot
        self.texts = {}  # round -> the file's text

    def on_round(self, index, advanced, stats):
        snapshots = {run.task.task_id: snapshot(run) for run in advanced}
        entries = {}
        for run in advanced:
            task_id = run.task.task_id
            entries[task_id] = {
                "iterations": len(run.history),
                "best_loss": run.population[0].loss if run.population else None,
                **reference_changes(self.written.get(task_id), snapshots[task_id]),
            }
        self.texts[index] = json.dumps({"round": index, "tasks": entries})
        self.written.update(snapshots)


def test_entries_replay_to_the_snapshot():
    [run] = make_runs(1)
    client = overlapping_client()
    written = None
    states = []

    def record(index, advanced, stats):
        nonlocal written
        entry = entry_since(written, run.state, run.task.task_id)
        states.append(apply(states[-1] if states else None, json.loads(json.dumps(entry))))
        assert states[-1] == snapshot(run)
        if written is not None:  # later entries carry only what grew, never the whole history
            assert "history" not in entry and "lineage" not in entry
        written = run.state

    run_rounds([run], rewriter=client, scorer=client, on_round=record)
    assert len(states) >= 3


def round_texts(out) -> dict[int, str]:
    return {int(p.stem.removeprefix("round-")): p.read_text() for p in layout.state_files(out)}


@pytest.mark.parametrize("cohorts", [1, 2])
def test_files_are_byte_for_byte_what_whole_snapshot_diffs_wrote(tmp_path, cohorts):
    runs = make_runs(5, iterations=6)
    reference = ReferenceWriter()
    manager = SuiteCheckpoints(runs, tmp_path)

    def both(index, advanced, stats):
        manager.on_round(index, advanced, stats)
        reference.on_round(index, advanced, stats)

    client = overlapping_client()
    with manager:
        run_rounds(runs, rewriter=client, scorer=client, on_round=both, cohorts=cohorts)
    assert len(reference.texts) >= 8
    assert round_texts(tmp_path) == reference.texts
    later = "".join(text for index, text in reference.texts.items() if index > 1)
    for key in ("history+", "lineage+", "scored_texts+", "population", "masking_results", "work"):
        assert f'"{key}"' in later  # every kind of change was compared


def test_files_after_a_resume_are_byte_for_byte_the_reference(tmp_path):
    with pytest.raises(Crash):
        run_with_checkpoints(tmp_path, make_runs(4, iterations=4), crash_at=4)
    runs = make_runs(4, iterations=4)
    manager = SuiteCheckpoints(runs, tmp_path)
    point = read_resume_point(tmp_path, manager.fingerprints)
    reference = ReferenceWriter(point.tasks)  # the snapshots the old driver resumed from
    done = manager.restore(point)

    def both(index, advanced, stats):
        manager.on_round(index, advanced, stats)
        reference.on_round(index, advanced, stats)

    client = overlapping_client()
    with manager:
        run_rounds(runs, rewriter=client, scorer=client, on_round=both, rounds_done=done, cohorts=2)
    assert len(reference.texts) >= 4
    assert {i: t for i, t in round_texts(tmp_path).items() if i > done} == reference.texts


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
