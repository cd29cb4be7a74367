import pyarrow as pa

from pmpo_ray.pmpo.rounds import combine_requests, run_stage, split_results


def table(n, tag):
    return pa.table(
        {"request_id": pa.array(range(n), pa.int64()), "context": [f"{tag}{i}" for i in range(n)]}
    )


def test_combine_and_split_round_trip():
    tables = [table(3, "a"), table(0, "b"), table(2, "c")]
    combined, offsets = combine_requests(tables)
    assert combined.column("request_id").to_pylist() == [0, 1, 2, 3, 4]
    assert offsets == [0, 3, 3]
    parts = split_results(combined, offsets, [3, 0, 2])
    assert [p.column("context").to_pylist() for p in parts] == [
        ["a0", "a1", "a2"],
        [],
        ["c0", "c1"],
    ]
    assert parts[2].column("request_id").to_pylist() == [0, 1]


def test_run_stage_makes_one_call_and_skips_empty_rounds():
    calls = []

    def echo(t):
        calls.append(t.num_rows)
        return t

    parts = run_stage([table(2, "a"), table(1, "b")], echo, empty=table(0, ""))
    assert calls == [3]
    assert [p.num_rows for p in parts] == [2, 1]
    assert [p.num_rows for p in run_stage([table(0, "a")], echo, empty=table(0, ""))] == [0]
    assert calls == [3]
