"""Jobs at the engines' pace: work-sized batches (one block, one map task each), replicas that
send back result columns only, token counting spread over the pool, held-out answers from the
scorer's model even when a rewriter pool exists. Real Ray; fake engines behind the replica
protocol."""

import pyarrow as pa
import pytest

from pmpo_ray.config import ReplicaConfig
from pmpo_ray.engines.in_process import InProcessClient
from pmpo_ray.engines.ray_data_client import RayDataClient
from pmpo_ray.engines.replicas import ReplicaPool
from pmpo_ray.engines.row_chunks import plan_batches
from pmpo_ray.engines.vllm_engine import VllmConfig
from pmpo_ray.evaluation.cached_evaluation import scorer_answers
from pmpo_ray.requests import SCORE_RESULT_FIELDS, generate_requests
from tests.failures import scoring_table
from tests.fakes import (
    FakeEngine,
    FakeReplica,
    QuickFakeReplica,
    RewriterReplica,
    rewriter_says,
    scripted_rewrites,
)


def test_a_replica_sends_back_ids_and_result_columns_only():
    table = scoring_table(6)
    lean, work = FakeReplica().score(table)
    assert lean.column_names == ["request_id", *(f.name for f in SCORE_RESULT_FIELDS)]
    assert lean.column("request_id").to_pylist() == table.column("request_id").to_pylist()
    assert work["calls"] == 1 and work["rows"] == 12
    assert work["prep_cpu_seconds"] > 0  # the replica's own CPU outside the engine is counted


@pytest.mark.ray
def test_a_job_is_cut_by_work_and_joined_to_the_requests(local_ray):
    import ray

    replicas = ReplicaConfig(num_replicas=2, num_cpus=0.25, min_batch_rows=8)
    client = RayDataClient(ReplicaPool.start(VllmConfig(), replicas, replica_class=FakeReplica))
    try:
        table = scoring_table(150)  # 300 rows
        scored = client.score(table)
        expected = FakeEngine(scripted_rewrites).score(table)
        assert scored.equals(expected)  # request columns kept by the driver, results joined
        stats = client.stats()["scorer"]
        planned = plan_batches(300, 2, min_rows=8)
        assert stats["jobs"] == 1
        assert stats["batches"] == len(planned) == client.last_job_batches()
        assert stats["calls"] == len(planned)  # one map task, one replica call, per batch
        served = ray.get(client.pools["scorer"].dispatcher.served_counts.remote())
        assert all(count > 0 for count in served)  # both replicas took work
        texts = [f"word {i} " * (i % 7 + 1) for i in range(600)]
        assert client.count_tokens(texts) == FakeEngine(scripted_rewrites).count_tokens(texts)
    finally:
        client.close()


@pytest.mark.ray
def test_held_out_answers_come_from_the_scorer_when_a_rewriter_pool_exists(local_ray):
    replicas = ReplicaConfig(num_replicas=1, num_cpus=0.25)
    scorer = ReplicaPool.start(VllmConfig(), replicas, replica_class=FakeReplica)
    rewriter = ReplicaPool.start(VllmConfig(), replicas, replica_class=RewriterReplica)
    client = RayDataClient(scorer, rewriter)
    try:
        asked = generate_requests([("Answer.", "Is it?")], task_id="t", n=1)
        assert texts(client.generate(asked)) == ["written by the rewriter"]
        assert texts(scorer_answers(client)(asked)) != ["written by the rewriter"]
        assert client.stats()["scorer"]["jobs"] == 1 and client.stats()["rewriter"]["jobs"] == 1
    finally:
        client.close()


def test_in_process_answers_come_from_the_scorer_too():
    client = InProcessClient(FakeEngine(scripted_rewrites), FakeEngine(rewriter_says))
    asked = generate_requests([("Answer.", "Is it?")], task_id="t", n=1)
    assert texts(client.generate(asked)) == ["written by the rewriter"]
    assert texts(scorer_answers(client)(asked)) != ["written by the rewriter"]
    with pytest.raises(ValueError, match="pool must be"):
        client.generate(asked, pool="judge")


def texts(generated: pa.Table) -> list[str]:
    return generated.column("text").to_pylist()


@pytest.mark.ray
def test_batches_hold_at_most_max_batch_seconds_of_measured_engine_time(local_ray):
    """After a first job the pool knows its seconds per row; later batches are capped so a
    replica that dies mid-batch loses at most about that much work."""
    replicas = ReplicaConfig(num_replicas=1, num_cpus=0.25, min_batch_rows=2, max_batch_seconds=0.5)
    client = RayDataClient(
        ReplicaPool.start(VllmConfig(), replicas, replica_class=QuickFakeReplica)
    )
    try:
        table = scoring_table(20)  # 40 rows; each call takes 0.2 s however many rows
        client.score(table)
        assert client.last_job_batches() == len(plan_batches(40, 1, min_rows=2))
        stats = client.stats()["scorer"]
        cap = int(0.5 / (stats["busy_seconds"] / stats["rows"]))
        assert cap < 20  # the cap binds: the uncapped plan starts with 20 rows
        client.score(table)
        assert client.last_job_batches() == len(plan_batches(40, 1, min_rows=2, max_rows=cap))
    finally:
        client.close()
