import pyarrow as pa
import pytest

from pmpo_ray.engines.row_chunks import reassemble, split_rows


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
