import json

import pytest

from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.example import Example
from pmpo_ray.tasks.example_files import SAMPLES_DIR, builtin_samples, load_examples
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


def test_a_balanced_split_trains_on_every_answer_alike():
    from collections import Counter

    # 9 of 10 examples answer (B): a plain 20% split is almost all (B)
    examples = [Example(str(i), f"q{i}", "(A)" if i % 10 == 0 else "(B)") for i in range(100)]
    train, test = paper_split(examples, 0.2, 50, seed=3, balanced=True)
    assert Counter(e.target for e in train) == {"(A)": 10, "(B)": 10}
    assert len(test) == 80 and not {e.example_id for e in train} & {e.example_id for e in test}
    assert paper_split(examples, 0.2, 50, seed=3, balanced=True) == (train, test)
    plain, _ = paper_split(examples, 0.2, 50, seed=3)
    assert Counter(e.target for e in plain)["(B)"] > 15
    # an answer that runs out leaves the rest to the others
    few = examples[:30]  # (A) only 3 times
    train, _ = paper_split(few, 0.5, 50, seed=0, balanced=True)
    assert Counter(e.target for e in train) == {"(A)": 3, "(B)": 12}
    config = TaskConfig(
        name="hyper",
        data="builtin:bbh/hyperbaton.json",
        format="multiple_choice",
        initial_prompt="Answer.",
        train_fraction=0.17,
        balance_train=True,
    )
    assert Counter(e.target for e in load_task(config).train) == {"(A)": 5, "(B)": 5}


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


def bbh_sample_format(path) -> str:
    """Multiple choice where the questions list options, free-form supervised otherwise."""
    return "multiple_choice" if embedded_answers(load_examples(path)[0].input) else "supervised"


SHIPPED_FORMATS = [
    (f"builtin:bbh/{path.name}", bbh_sample_format(path))
    for path in sorted((SAMPLES_DIR / "bbh").glob("*.json"))
] + [
    ("builtin:gsm8k/test_sample.jsonl", "supervised"),
    ("builtin:aqua/sample.jsonl", "multiple_choice"),
    ("builtin:aqua/sample.jsonl", "supervised"),
    ("builtin:alpaca_eval/pairs_short.jsonl", "preference"),
]


def test_every_shipped_sample_is_split_tested():
    assert {data for data, _ in SHIPPED_FORMATS} == {f"builtin:{s}" for s in builtin_samples()}


@pytest.mark.parametrize("data, format", SHIPPED_FORMATS)
def test_shipped_samples_split_without_mixing(data, format):
    config = TaskConfig(name="s", data=data, format=format, initial_prompt="p", split_seed=3)
    task = load_task(config)
    everything = load_examples(data, format)
    assert len(task.train) == min(50, max(1, len(everything) // 5))
    assert not {e.example_id for e in task.train} & {e.example_id for e in task.test}
    assert not {(e.input, e.target) for e in task.train} & {(e.input, e.target) for e in task.test}
    assert not {e.input for e in task.train} & {e.input for e in task.test}
    assert sorted(e.example_id for e in task.train + task.test) == sorted(
        e.example_id for e in everything
    )
    assert load_task(config) == task  # seeded: the same split every time


def test_explicit_test_file_of_another_type(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"question": "1+1?", "answer": "2\n#### 2"}) + "\n")
    test = tmp_path / "test.csv"
    test.write_text('question,answer\n2+2?,"4\n#### 4"\n3+3?,"6\n#### 6"\n')
    task = load_task(TaskConfig(name="g", data=str(train), test_data=str(test), initial_prompt="p"))
    assert [e.example_id for e in task.test] == ["heldout-1", "heldout-2"]
    assert [e.answer for e in task.train + task.test] == ["2", "4", "6"]
    assert task.answer_match == "number"  # the held-out file read with the training layout


@pytest.mark.parametrize(
    "data, format, answer_match, expected",
    [
        ("builtin:bbh/navigate.json", "multiple_choice", "auto", "option"),
        ("builtin:bbh/object_counting.json", "supervised", "auto", "exact"),
        ("builtin:bbh/object_counting.json", "supervised", "number", "number"),
        ("builtin:gsm8k/test_sample.jsonl", "supervised", "auto", "number"),
        ("builtin:aqua/sample.jsonl", "supervised", "auto", "option"),
        ("builtin:alpaca_eval/pairs_short.jsonl", "preference", "auto", "none"),
    ],
)
def test_answer_match_resolution(data, format, answer_match, expected):
    config = TaskConfig(
        name="m", data=data, format=format, answer_match=answer_match, initial_prompt="p"
    )
    assert load_task(config).answer_match == expected


def test_answer_match_on_a_preference_task_is_an_error():
    config = TaskConfig(
        name="pref",
        data="builtin:alpaca_eval/pairs_short.jsonl",
        format="preference",
        answer_match="exact",
        initial_prompt="p",
    )
    with pytest.raises(DataError, match="task 'pref': field 'answer_match' is 'exact'"):
        load_task(config)


def test_empty_held_out_split_is_an_error(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"input": f"q{i}", "target": "a"}) + "\n" for i in range(5)))
    config = TaskConfig(name="x", data=str(data), train_fraction=1.0, initial_prompt="p")
    with pytest.raises(DataError, match=r"task 'x': held-out split is empty: 5 example\(s\)"):
        load_task(config)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    config = TaskConfig(name="x", data=str(data), test_data=str(empty), initial_prompt="p")
    with pytest.raises(DataError, match=r"task 'x': held-out split is empty: test_data .*empty"):
        load_task(config)


def test_aqua_label_matching_no_option_names_task_file_row_field(tmp_path):
    path = tmp_path / "aqua.jsonl"
    good = {"question": "1+1?", "options": ["A)1", "B)2"], "rationale": "1+1=2", "correct": "B"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"correct": "F"}) + "\n")
    config = TaskConfig(name="aq", data=str(path), format="multiple_choice", initial_prompt="p")
    with pytest.raises(DataError) as error:
        load_task(config)
    assert str(error.value) == (
        f"task 'aq': {path}: row 2: field 'correct' 'F' matches no option label ['A', 'B']; "
        "to leave out rows like this, set `invalid_rows: skip` in the task config"
    )
