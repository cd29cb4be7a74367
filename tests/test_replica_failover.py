"""A replica that dies mid-job is replaced and its batch answered elsewhere: real Ray, replica
processes killed by their pid, slow fake engines so that a job lasts a few seconds."""

import os
import signal
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.requests import generate_requests
from tests.failures import scoring_table
from tests.fakes import FakeEngine, SlowFakeReplica, scripted_rewrites

pytestmark = pytest.mark.ray


@pytest.fixture
def client(local_ray):
    replicas = ReplicaConfig(num_replicas=2, num_cpus=0.25, batch_rows=4, restart_timeout_s=60)
    client = RayDataClient(ReplicaPool.start(VllmConfig(), replicas, replica_class=SlowFakeReplica))
    yield client
    client.close()


def kill_replica_mid_job(client, index):
    """SIGKILL replica `index`'s process in the middle of a call of the next job (calls take
    a second; the job's own start-up a variable second or two here); returns the pid."""
    import ray

    pool = client.pools["scorer"]
    pid = ray.get(pool.actors[index].pid.remote())
    served_before = sum(ray.get(pool.dispatcher.served_counts.remote()))
    threading.Thread(
        target=signal_mid_call, args=(pool, index, served_before, pid), daemon=True
    ).start()
    return pid


def signal_mid_call(pool, index, served_before, pid):
    import ray

    while True:
        served = sum(ray.get(pool.dispatcher.served_counts.remote()))
        busy = ray.get(pool.dispatcher.in_flight_counts.remote())[index]
        if served >= served_before + 2 and busy:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the one-second call
    os.kill(pid, signal.SIGKILL)


def wait_until_live(client, replicas=2, timeout=60):
    deadline = time.monotonic() + timeout
    while (health := client.pools["scorer"].health())["live"] < replicas:
        assert time.monotonic() < deadline, f"replica did not come back: {health}"
        time.sleep(0.5)
    return health


def test_a_replica_killed_mid_scoring_job_is_restarted_and_its_batch_answered(client):
    import ray

    requests = scoring_table()
    killed = kill_replica_mid_job(client, 0)
    result = client.score(requests)
    expected = FakeEngine(scripted_rewrites).score(requests)
    assert result.column("request_id").to_pylist() == requests.column("request_id").to_pylist()
    assert result.column("logprob_sum").to_pylist() == expected.column("logprob_sum").to_pylist()
    health = wait_until_live(client)
    assert health["failed_calls"] >= 1, "the kill did not hit a call: the test proves nothing"
    assert ray.get(client.pools["scorer"].actors[0].pid.remote()) != killed  # a new process
    # every row counted once: lost batches are not counted, their retries are
    assert client.stats()["scorer"]["rows"] == requests.num_rows
    # the restarted replica takes work again
    again = client.score(requests)
    assert again.column("logprob_sum").to_pylist() == expected.column("logprob_sum").to_pylist()
    assert all(work["calls"] > 0 for work in client.pools["scorer"].stats())


def test_a_replica_killed_mid_generation_job_loses_no_sample(client):
    messages = [("Rewrite.", f"prompt {i}") for i in range(24)]
    requests = generate_requests(messages, task_id="t", n=2, temperature=0.8, max_tokens=6, seed=3)
    kill_replica_mid_job(client, 1)
    result = client.generate(requests)
    expected = FakeEngine(scripted_rewrites).generate(requests)
    assert result.column("text").to_pylist() == expected.column("text").to_pylist()
    assert client.pools["scorer"].health()["failed_calls"] >= 1
    assert client.stats()["scorer"]["rows"] == expected.num_rows


def test_errors_raised_inside_a_replica_come_out_as_one_line(local_ray):
    """What the commands print (cli.error_line): the user's error as it was raised; anything
    else as its type, where it happened and a log file holding the full trace."""
    from pathlib import Path

    from pmpo_ray.cli import error_line
    from tests.fakes import FailingFakeReplica

    pool = ReplicaPool.start(
        VllmConfig(), ReplicaConfig(num_cpus=0.25), replica_class=FailingFakeReplica
    )
    client = RayDataClient(pool)
    try:
        lines = []
        for task_id in ("too-long", "other"):
            table = scoring_table()
            column = table.column_names.index("task_id")
            table = table.set_column(column, "task_id", pa.array([task_id] * table.num_rows))
            with pytest.raises(Exception) as raised:
                client.score(table)
            lines.append(error_line(raised.value, (ValueError,)))
    finally:
        client.close()
    (user_line, is_user), (bug_line, is_bug_user) = lines
    assert is_user and user_line == "task too-long, example 3: 2100 tokens, over the model's window"
    assert not is_bug_user and "\n" not in bug_line
    assert bug_line.startswith("RuntimeError in scorer replica 0: engine bug: shapes do not match")
    trace = Path(bug_line.rsplit("(full trace: ", 1)[1].rstrip(")"))
    assert "Traceback" in trace.read_text() and "engine bug" in trace.read_text()
    trace.unlink()


def test_a_batch_that_kills_every_replica_it_meets_is_named_not_retried_forever(local_ray):
    from pmpo_ray.cli import error_line
    from tests.fakes import PoisonedFakeReplica

    replicas = ReplicaConfig(num_replicas=2, num_cpus=0.25, batch_rows=2, restart_timeout_s=60)
    pool = ReplicaPool.start(VllmConfig(), replicas, replica_class=PoisonedFakeReplica)
    client = RayDataClient(pool)
    try:
        table = scoring_table(4)  # 8 rows in 4 batches; the one holding request 0 kills
        with pytest.raises(Exception) as raised:
            client.score(table)
        line, is_user = error_line(raised.value, (ValueError,))
        assert not is_user and "\n" not in line
        assert line.startswith(
            "score of requests 0..1 (2 rows) in the scorer pool: 3 replicas died running it"
        ), line
        assert pool.health()["failed_calls"] >= 3
        wait_until_live(client)
        rest = table.filter(pc.greater(table.column("request_id"), 1))
        assert client.score(rest).num_rows == 6  # the pool still serves everything else
    finally:
        client.close()
