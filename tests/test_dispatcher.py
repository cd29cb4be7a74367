"""The replica dispatcher lends the least busy replica, so batches spread over the pool."""

import pytest

from pmpo_ray.engines.ray_data_client import ReplicaDispatcher, batch_rows_for, check_free_cpu


def test_least_busy_replica_first_then_fewest_served():
    dispatcher = ReplicaDispatcher(3)
    assert [dispatcher.acquire() for _ in range(3)] == [0, 1, 2]
    dispatcher.release(1)
    assert dispatcher.acquire() == 1  # the only idle one, although it served as much as others
    dispatcher.release(0)
    dispatcher.release(2)
    assert dispatcher.acquire() == 0  # idle and tied on in-flight: fewest served wins (0 and 2)
    assert dispatcher.acquire() == 2
    assert dispatcher.served_counts() == [2, 2, 2]


def test_no_free_cpu_is_refused():
    check_free_cpu(1.0)
    with pytest.raises(ValueError, match="leave 0.5 CPU free"):
        check_free_cpu(0.5)


def test_small_tables_are_cut_so_every_replica_gets_work():
    assert batch_rows_for(96, 2, 64) == 24  # four batches for two replicas, not 64 + 32
    assert batch_rows_for(10_000, 4, 64) == 64  # big tables keep the configured size
    assert batch_rows_for(3, 8, 64) == 1
