import json

import pytest

from pmpo_ray.requests import Example
from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.example_files import load_examples
from pmpo_ray.tasks.formats import DataError, embedded_answers
from pmpo_ray.tasks.task import load_task, paper_split


def test_bbh_multiple_choice_keeps_distractors():
    examples = load_examples("builtin:bbh/hyperbaton.json", "multiple_choice")
    first = examples[0]
    assert first.target in ("(A)", "(B)")
    assert set(first.rejected) == {"(A)", "(B)"} - {first.target}
    navigate = load_examples("builtin:bbh/navigate.json", "multiple_choice")[0]
    assert (navigate.target, navigate.rejected) == ("No", ("Yes",))


def test_embedded_answers():
    assert embedded_answers("Q?\nOptions:\n(A) red\n(B) blue") == ["(A)", "(B)"]
    assert embedded_answers("Q?\nOptions:\n- Yes\n- No") == ["Yes", "No"]
    assert embedded_answers("no options here") == []


def test_listed_options_and_label_errors(tmp_path):
    path = tmp_path / "mc.jsonl"
    rows = [
        {"question": "2+2?", "options": ["3", "4", "5"], "answer": "B"},
        {"question": "Sky?", "options": ["green", "blue"], "answer": "blue"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = load_examples(path, "multiple_choice")
    assert first.input.endswith("(A) 3\n(B) 4\n(C) 5")
    assert (first.target, first.rejected) == ("(B)", ("(A)", "(C)"))
    assert second.target == "(B)"
    path.write_text(json.dumps({"question": "Q", "options": ["x", "y"], "answer": "D"}) + "\n")
    with pytest.raises(DataError, match=r"row 1: answer 'D' matches no option"):
        load_examples(path, "multiple_choice")


def test_bbh_target_outside_options_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"input": "Q\nOptions:\n(A) x\n(B) y", "target": "(C)"}) + "\n")
    with pytest.raises(DataError, match=r"target '\(C\)' matches no option"):
        load_examples(path, "multiple_choice")


def test_preference_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"instruction": "Say hi", "chosen": "Hi!", "rejected": ["Go away", "No"]})
        + "\n"
        + json.dumps({"instruction": "Say bye", "chosen": "Bye", "rejected": "Hello"})
        + "\n"
    )
    first, second = load_examples(path, "preference")
    assert (first.target, first.rejected, second.rejected) == ("Hi!", ("Go away", "No"), ("Hello",))
    path.write_text(json.dumps({"instruction": "x", "chosen": "y", "rejected": []}) + "\n")
    with pytest.raises(DataError, match="row 1: field 'rejected'"):
        load_examples(path, "preference")


def test_paper_split_sizes_and_disjointness():
    examples = [Example(str(i), f"q{i}", "a") for i in range(300)]
    train, test = paper_split(examples, 0.2, 50, seed=1)
    assert len(train) == 50 and len(test) == 250
    assert not {e.example_id for e in train} & {e.example_id for e in test}
    assert paper_split(examples, 0.2, 50, seed=1) == (train, test)
    assert paper_split(examples, 0.2, 50, seed=2)[0] != train
    small_train, small_test = paper_split(examples[:60], 0.2, 50, seed=0)
    assert (len(small_train), len(small_test)) == (12, 48)


def test_load_task_builtin_and_unknown_sample():
    task = load_task(
        TaskConfig(
            name="nav",
            data="builtin:bbh/navigate.json",
            format="multiple_choice",
            initial_prompt="Go.",
        )
    )
    assert (len(task.train), len(task.test)) == (12, 48)
    with pytest.raises(DataError, match="no such built-in sample"):
        load_task(TaskConfig(name="x", data="builtin:bbh/nope.json", initial_prompt="Go."))


def test_explicit_test_file_must_not_repeat_training_examples(tmp_path):
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    train.write_text('{"input": "a", "target": "b"}\n{"input": "c", "target": "d"}\n')
    test.write_text('{"input": "e", "target": "f"}\n')
    task = load_task(TaskConfig(name="t", data=str(train), test_data=str(test), initial_prompt="p"))
    assert [e.example_id for e in task.test] == ["heldout-1"]
    test.write_text('{"input": "a", "target": "b"}\n')
    with pytest.raises(DataError, match="task 't': 1 example\\(s\\) in both"):
        load_task(TaskConfig(name="t", data=str(train), test_data=str(test), initial_prompt="p"))
