import pytest

from pmpo_ray.tasks.example_files import DataError, load_examples
from tests.conftest import SAMPLES


def test_bbh_layout_loads():
    examples = load_examples(SAMPLES / "navigate.json")
    assert len(examples) == 60
    assert examples[0].target == "No" and "starting point" in examples[0].input


def test_jsonl_loads_with_ids(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "target": "b", "id": "x1"}\n\n{"input": "c", "target": 4}\n')
    examples = load_examples(path)
    assert [(e.example_id, e.target) for e in examples] == [("x1", "b"), ("3", "4")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"input": "a", "target": "b"}\n{"input": "a"}\n', r"row 2: field 'target' missing"),
        ('{"input": "a", "target": "  "}\n', r"row 1: field 'target' is empty"),
        ('{"input": "a", "target": "b"}\nnot json\n', r"line 2 is not valid JSON"),
        ('["a", "b"]\n', r"row 1: expected an object"),
        ('{"input": null, "target": "b"}\n', r"row 1: field 'input' must be text"),
        ("\n", r"no examples"),
    ],
)
def test_bad_rows_are_named(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=rf"bad.jsonl: {message}"):
        load_examples(path)


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match=r"missing.jsonl: missing"):
        load_examples(tmp_path / "missing.jsonl")


def test_bbh_file_without_examples(tmp_path):
    path = tmp_path / "task.json"
    path.write_text('{"rows": []}')
    with pytest.raises(DataError, match="'examples' list"):
        load_examples(path)
