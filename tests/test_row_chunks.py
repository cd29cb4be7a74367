import pyarrow as pa
import pytest

from pmpo_ray.engines.row_chunks import (
    check_answered,
    fixed_batches,
    in_batch_order,
    join_scores,
    plan_batches,
    reassemble,
    split_rows,
)


def requests(n):
    return pa.table({"request_id": list(range(n)), "context": [f"c{i}" for i in range(n)]})


def test_split_then_reassemble_is_identity():
    table = requests(10)
    chunks = split_rows(table, 3)
    assert [c.num_rows for c in chunks] == [3, 3, 3, 1]
    assert reassemble(table, chunks).equals(table)


def test_several_rows_per_request_are_allowed_in_order():
    table = requests(2)
    result = pa.table({"request_id": [0, 0, 1, 1], "text": list("abcd")})
    assert reassemble(table, [result]).num_rows == 4


@pytest.mark.parametrize(
    "ids, message",
    [([0, 1], "missing \\[2\\]"), ([0, 1, 2, 1], "repeated \\[1\\]"), ([0, 2, 1], "order differs")],
)
def test_lost_repeated_or_reordered_rows_are_errors(ids, message):
    with pytest.raises(RuntimeError, match=message):
        reassemble(requests(3), [pa.table({"request_id": ids})])


def test_bad_chunk_size():
    with pytest.raises(ValueError, match="positive"):
        split_rows(requests(3), 0)


def test_work_sized_batches_start_large_and_shrink_to_the_floor():
    sizes = plan_batches(96_000, 1, min_rows=16)
    assert sum(sizes) == 96_000
    assert sizes[0] == 48_000  # half the job: two batches in flight per replica
    assert sizes == sorted(sizes, reverse=True)
    assert min(sizes) >= 1 and sizes[-2] == 16  # only the very last may be shorter
    assert len(sizes) <= 200  # a fixed 64 rows would have been 1,500 batches


def test_every_replica_gets_two_batches_and_the_cap_bounds_each_one():
    sizes = plan_batches(96, 2, min_rows=4)
    assert sizes[:4] == [24, 18, 14, 10]  # a quarter of what is left each time
    capped = plan_batches(10_000, 4, min_rows=16, max_rows=500)
    assert max(capped) == 500 and sum(capped) == 10_000
    assert plan_batches(3, 8, min_rows=16) == [3]
    assert plan_batches(0, 2, min_rows=16) == []


def test_fixed_batches_when_a_row_count_is_configured():
    assert [t.num_rows for t in split_rows(requests(10), fixed_batches(10, 4))] == [4, 4, 2]
    with pytest.raises(ValueError, match="add up"):
        split_rows(requests(10), [4, 4])


def test_parts_in_any_order_come_back_in_batch_order():
    batches = split_rows(requests(10), [5, 3, 2])
    parts = [pa.table({"request_id": ids}) for ids in ([8, 9], [0, 1, 2, 3, 4], [5, 6, 7])]
    ordered = in_batch_order(batches, parts)
    assert pa.concat_tables(ordered).column("request_id").to_pylist() == list(range(10))
    with pytest.raises(RuntimeError, match="no batch starts"):
        in_batch_order(batches, [pa.table({"request_id": [4]})])


def test_scores_join_beside_the_requests_only_when_every_request_came_back_in_order():
    table = requests(4)
    result = pa.table({"request_id": [0, 1, 2, 3], "logprob_sum": [-1.0, -2.0, -3.0, -4.0]})
    joined = join_scores(table, result)
    assert joined.column_names == ["request_id", "context", "logprob_sum"]
    assert joined.column("context").to_pylist() == ["c0", "c1", "c2", "c3"]
    with pytest.raises(RuntimeError, match="order differs"):
        join_scores(table, result.take([1, 0, 2, 3]))
    with pytest.raises(RuntimeError, match="missing \\[3\\]"):
        join_scores(table, result.slice(0, 3))


def test_generations_must_answer_n_samples_per_request_in_order():
    table = requests(2).append_column("n", pa.array([2, 1], pa.int32()))
    check_answered(table, pa.table({"request_id": [0, 0, 1]}), samples=table.column("n"))
    with pytest.raises(RuntimeError):
        check_answered(table, pa.table({"request_id": [0, 1, 1]}), samples=table.column("n"))
