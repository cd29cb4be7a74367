"""Round checkpoints are written off the driver thread: the driver only hands states over, a
slow disk never holds up the next round, a failed write reaches the driver, and the rounds
reach the disk in order, also when the driver crashes."""

import json
import logging
import shutil
import threading
from dataclasses import replace

import pytest

from pmpo_ray.run_folder import layout
from pmpo_ray.suite import checkpoint_writer
from pmpo_ray.suite.checkpoints import SuiteCheckpoints
from pmpo_ray.suite.resume_point import read_resume_point
from tests.test_overlap import make_runs

STATS = {"wall_seconds": 0.5}


def play(manager, run, index):
    """A round of `run`: a new state (as every step makes one), handed to the checkpoints."""
    run.state = replace(run.state, stop_reason=f"round {index}")
    manager.on_round(index, [run], {"round": index, **STATS})


def logged_rounds(out) -> list[int]:
    return [json.loads(line)["round"] for line in layout.rounds_log_path(out).open()]


@pytest.fixture
def gated_writes(monkeypatch):
    """Round files wait for the test to open the gate; the rest of the writer runs."""
    gate, threads = threading.Event(), []
    write = checkpoint_writer.atomic_write_text

    def slow_write(text, path):
        threads.append(threading.current_thread())
        assert gate.wait(10), "the test never opened the gate"
        write(text, path)

    monkeypatch.setattr(checkpoint_writer, "atomic_write_text", slow_write)
    return gate, threads


def test_the_driver_hands_over_and_flush_waits_for_the_disk(tmp_path, gated_writes, monkeypatch):
    gate, threads = gated_writes
    converted_on = []
    entry_since = checkpoint_writer.entry_since

    def watched(*args):
        converted_on.append(threading.current_thread())
        return entry_since(*args)

    monkeypatch.setattr(checkpoint_writer, "entry_since", watched)
    [run] = make_runs(1)
    manager = SuiteCheckpoints([run], tmp_path)
    for index in (1, 2, 3):
        play(manager, run, index)  # returns although the first write is still held
    assert not layout.state_files(tmp_path) and not layout.rounds_log_path(tmp_path).exists()
    gate.set()
    manager.flush()
    assert [p.name for p in layout.state_files(tmp_path)] == [
        f"round-000{i}.json" for i in (1, 2, 3)
    ]
    assert logged_rounds(tmp_path) == [1, 2, 3]
    driver = threading.current_thread()
    assert converted_on and all(thread is not driver for thread in converted_on + threads)
    manager.close()


def test_a_failed_write_reaches_the_driver_and_nothing_after_it_is_written(tmp_path, monkeypatch):
    write = checkpoint_writer.atomic_write_text

    def full_disk_at_round_2(text, path):
        if path == layout.state_path(tmp_path, 2):
            raise OSError(28, "No space left on device")
        write(text, path)

    monkeypatch.setattr(checkpoint_writer, "atomic_write_text", full_disk_at_round_2)
    [run] = make_runs(1)
    manager = SuiteCheckpoints([run], tmp_path)
    play(manager, run, 1)
    play(manager, run, 2)
    with pytest.raises(OSError, match="No space left") as raised:
        manager.flush()
    assert "while writing the checkpoint of round 2" in raised.value.__notes__
    with pytest.raises(OSError):  # the next round hears of it too, and is not written
        play(manager, run, 3)
    with pytest.raises(OSError):
        manager.close()
    assert [p.name for p in layout.state_files(tmp_path)] == ["round-0001.json"]
    assert logged_rounds(tmp_path) == [1]


def test_a_crash_keeps_the_rounds_before_it(tmp_path, gated_writes):
    gate, _ = gated_writes
    [run] = make_runs(1)
    manager = SuiteCheckpoints([run], tmp_path)
    with pytest.raises(KeyError, match="the driver's own error"), manager:
        for index in (1, 2, 3):
            play(manager, run, index)
        gate.set()  # still writing when the driver fails
        raise KeyError("the driver's own error")
    assert logged_rounds(tmp_path) == [1, 2, 3]
    assert read_resume_point(tmp_path, manager.fingerprints).round == 3


def test_a_failed_write_during_a_crash_is_logged_not_raised_over_it(tmp_path, caplog):
    [run] = make_runs(1)
    manager = SuiteCheckpoints([run], tmp_path)
    play(manager, run, 1)
    manager.flush()
    shutil.rmtree(layout.state_dir(tmp_path))  # the folder is gone: the next write fails
    play(manager, run, 2)
    with caplog.at_level(logging.ERROR), pytest.raises(KeyError), manager:
        raise KeyError("the driver's own error")
    assert "were not written" in caplog.text and "No such file" in caplog.text
    assert logged_rounds(tmp_path) == [1]


def test_many_rounds_reach_the_disk_in_order_and_replay(tmp_path, monkeypatch):
    write = checkpoint_writer.atomic_write_text
    order = []

    def uneven_write(text, path):  # some writes much slower than others
        if len(order) % 7 == 0:
            threading.Event().wait(0.002)
        order.append(path.name)
        write(text, path)

    monkeypatch.setattr(checkpoint_writer, "atomic_write_text", uneven_write)
    runs = make_runs(3)
    with SuiteCheckpoints(runs, tmp_path) as manager:
        for index in range(1, 201):
            play(manager, runs[index % 3], index)
    assert order == [layout.state_path(tmp_path, i).name for i in range(1, 201)]
    assert logged_rounds(tmp_path) == list(range(1, 201))
    point = read_resume_point(tmp_path, manager.fingerprints)
    assert point.round == 200
    assert {task: state["stop_reason"] for task, state in point.tasks.items()} == {
        "task0": "round 198",
        "task1": "round 199",
        "task2": "round 200",
    }
