"""Loaders: every layout on the shipped samples, column mapping, the hub path without network,
and the real benchmark files in ../shared/data when that folder exists."""

import csv
import json
from pathlib import Path

import pytest

from pmpo_ray.tasks.config import TaskConfig
from pmpo_ray.tasks.example_files import SAMPLES_DIR, load_data, load_examples
from pmpo_ray.tasks.formats import DataError, embedded_answers
from pmpo_ray.tasks.hub import dataset_records
from pmpo_ray.tasks.layouts import convert_records, guess_layout
from pmpo_ray.tasks.task import load_task

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent (only development machines have it)"
)


def raw_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_gsm8k_sample_keeps_the_solution_and_extracts_the_number():
    data = load_data("builtin:gsm8k/test_sample.jsonl")
    raw = raw_jsonl(SAMPLES_DIR / "gsm8k" / "test_sample.jsonl")
    assert data.layout == "gsm8k" and len(data.examples) == 60
    first = data.examples[0]
    assert (first.input, first.target) == (raw[0]["question"], raw[0]["answer"])
    assert first.answer == "18" and first.target.endswith("#### 18")
    for example, record in zip(data.examples, raw):
        assert example.answer == record["answer"].split("#### ")[1].replace(",", "")
        float(example.answer)


def test_gsm8k_commas_and_missing_final_answer(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1000 + 234\n#### 1,234"}) + "\n")
    assert load_examples(path)[0].answer == "1234"
    path.write_text(json.dumps({"question": "q", "answer": "it is 4"}) + "\n")
    with pytest.raises(DataError, match=r"g.jsonl: row 1: field 'answer' has no final answer"):
        load_examples(path)


def test_aqua_sample_as_multiple_choice():
    data = load_data("builtin:aqua/sample.jsonl", "multiple_choice")
    raw = raw_jsonl(SAMPLES_DIR / "aqua" / "sample.jsonl")
    assert data.layout == "aqua" and len(data.examples) == 24
    assert sorted({r["correct"] for r in raw}) == ["A", "B", "C", "D", "E"]
    for example, record in zip(data.examples, raw):
        gold = f"({record['correct']})"
        assert example.input.startswith(record["question"] + "\nOptions:\n(A) ")
        assert (example.target, example.answer) == (gold, gold)
        assert set(example.rejected) == {"(A)", "(B)", "(C)", "(D)", "(E)"} - {gold}
        assert embedded_answers(example.input) == ["(A)", "(B)", "(C)", "(D)", "(E)"]
    first = data.examples[0]
    assert "\n(A) " + raw[0]["options"][0].removeprefix("A)") in first.input


def test_aqua_sample_as_supervised_ends_with_the_label():
    data = load_data("builtin:aqua/sample.jsonl", "supervised")
    raw = raw_jsonl(SAMPLES_DIR / "aqua" / "sample.jsonl")
    for example, record in zip(data.examples, raw):
        assert example.target == f"{record['rationale']}\nThe answer is ({record['correct']})."
        assert example.answer == f"({record['correct']})" and example.rejected == ()


def test_preference_sample_pairs():
    examples = load_examples("builtin:alpaca_eval/pairs_short.jsonl", "preference")
    raw = raw_jsonl(SAMPLES_DIR / "alpaca_eval" / "pairs_short.jsonl")
    assert len(examples) == 40
    assert [(e.input, e.target, e.rejected) for e in examples] == [
        (r["instruction"], r["chosen"], (r["rejected"],)) for r in raw
    ]


def test_bbh_samples_keep_the_canary_and_load():
    for path in sorted((SAMPLES_DIR / "bbh").glob("*.json")):
        assert "canary GUID" in json.loads(path.read_text())["canary"], path.name
        assert len(load_examples(path)) == 60, path.name
    for name in ("logical_deduction_three_objects", "disambiguation_qa"):
        example = load_examples(f"builtin:bbh/{name}.json", "multiple_choice")[0]
        assert example.target.startswith("(") and len(example.rejected) >= 2


@pytest.mark.parametrize(
    "record, layout",
    [
        ({"input": "q", "target": "a"}, "bbh"),
        ({"question": "q", "answer": "x\n#### 3"}, "gsm8k"),
        ({"question": "q", "options": ["A)1", "B)2"], "rationale": "r", "correct": "A"}, "aqua"),
        ({"question": "q", "options": ["1", "2"], "answer": "A"}, "records"),
        ({"instruction": "i", "chosen": "c", "rejected": "r"}, "records"),
    ],
)
def test_guess_layout(record, layout):
    assert guess_layout(record) == layout


def test_csv_with_column_mapping(tmp_path):
    path = tmp_path / "data.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "prompt", "completion"])
        writer.writerow(["k1", "Pad 7 to three digits", "007"])
        writer.writerow(["k2", 'Say "hi", twice', "hi, hi"])
    columns = {"id": "key", "input": "prompt", "target": "completion"}
    examples = load_examples(path, columns=columns)
    assert [(e.example_id, e.input, e.target) for e in examples] == [
        ("k1", "Pad 7 to three digits", "007"),
        ("k2", 'Say "hi", twice', "hi, hi"),
    ]
    config = TaskConfig(
        name="csvtask", data=str(path), columns={"target": "answer"}, initial_prompt="p"
    )
    with pytest.raises(DataError) as error:
        load_task(config)
    message = str(error.value)
    assert message.startswith("task 'csvtask': ") and "data.csv: row 1" in message
    assert "column 'answer' (mapped to field 'target'" in message and "'completion'" in message


def test_parquet_preference_with_column_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"prompt": "Greet", "good": "Hello!", "bad": ["Go away", "..."]},
        {"prompt": "Part", "good": "Goodbye.", "bad": ["Whatever"]},
    ]
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    columns = {"instruction": "prompt", "chosen": "good", "rejected": "bad"}
    first, second = load_examples(path, "preference", columns=columns)
    assert (first.input, first.target, first.rejected) == ("Greet", "Hello!", ("Go away", "..."))
    assert (second.example_id, second.rejected) == ("2", ("Whatever",))


def test_mapped_fields_override_the_guess(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Capital of France?", "answer": "Paris"}) + "\n")
    data = load_data(path, columns={"input": "question", "target": "answer"})
    assert data.layout == "bbh" and data.examples[0].target == "Paris"
    with pytest.raises(DataError, match=r"field 'format' is 'multiple_choice' but layout 'gsm8k'"):
        load_data(path, "multiple_choice", layout="gsm8k")


def test_unknown_file_type(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(DataError, match=r"notes.txt: unknown file type"):
        load_examples(path)


def test_hub_rows_convert_like_files():
    import datasets

    bbh = datasets.Dataset.from_list(
        [
            {"input": "Go?\nOptions:\n- Yes\n- No", "target": "No"},
            {"input": "Pick\nOptions:\n(A) x\n(B) y", "target": "(B)"},
        ]
    )
    examples, layout = convert_records(
        dataset_records(bbh), "multiple_choice", "auto", {}, "hf:lukaemon/bbh"
    )
    assert layout == "bbh"
    assert [(e.target, e.rejected) for e in examples] == [("No", ("Yes",)), ("(B)", ("(A)",))]
    gsm8k = datasets.Dataset.from_list([{"question": "1+1?", "answer": "1+1=2\n#### 2"}])
    [example], layout = convert_records(dataset_records(gsm8k), "supervised", "auto", {}, "hf:g")
    assert (layout, example.answer, example.target) == ("gsm8k", "2", "1+1=2\n#### 2")
    aqua = datasets.Dataset.from_list(
        [{"question": "2*3?", "options": ["A)5", "B)6"], "rationale": "2*3=6", "correct": "B"}]
    )
    [example], _ = convert_records(dataset_records(aqua), "multiple_choice", "auto", {}, "hf:a")
    assert (example.input, example.target) == ("2*3?\nOptions:\n(A) 5\n(B) 6", "(B)")


def test_hub_task_goes_through_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        start = 0 if split == "train" else 100
        rows = [{"input": f"q{i}", "target": f"a{i}"} for i in range(start, start + 10)]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    config = TaskConfig(
        name="hubtask",
        data="hf:owner/set",
        data_config="cfg",
        test_data="hf:owner/set:validation",
        initial_prompt="p",
    )
    task = load_task(config)
    assert calls == [("owner/set", "cfg", "train"), ("owner/set", "cfg", "validation")]
    assert [e.input for e in task.train] == [f"q{i}" for i in range(10)]
    assert task.test[0].input == "q100" and task.answer_match == "exact"


def test_hub_unreachable_is_a_clear_error(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub.constants

    # The libraries read these at import, so the module values are patched besides the env.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    config = TaskConfig(name="hubby", data="hf:pmpo-ray-tests/no-such-dataset", initial_prompt="p")
    with pytest.raises(DataError) as error:
        load_task(config)
    message = str(error.value)
    assert message.startswith("task 'hubby': hf:pmpo-ray-tests/no-such-dataset: ")
    assert "hub could not be reached" in message and "local .jsonl" in message
    assert "OfflineModeIsEnabled" in message  # failed before any network attempt


def test_unknown_hub_dataset_is_a_clear_error(monkeypatch):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    def missing(name, config, split):
        raise DatasetNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    config = TaskConfig(name="hubby", data="hf:nobody/nothing", initial_prompt="p")
    with pytest.raises(DataError, match=r"task 'hubby': hf:nobody/nothing: .*dataset is unknown"):
        load_task(config)


@needs_shared
def test_shared_bbh_files_load_in_their_format():
    free_form = {"boolean_expressions", "dyck_languages", "multistep_arithmetic_two"}
    free_form |= {"object_counting", "sports_understanding", "word_sorting"}
    paths = sorted((SHARED_DATA / "bbh").glob("*.json"))
    assert len(paths) >= 20
    for path in paths:
        examples = load_examples(path)
        if path.stem in free_form:
            assert not any(embedded_answers(e.input) for e in examples), path.name
        elif path.stem == "movie_recommendation":
            # One upstream target ("Monsters, Inc") names no option letter: a real bad label.
            with pytest.raises(DataError, match=r"row 164: target 'Monsters, Inc' matches no"):
                load_examples(path, "multiple_choice")
        else:
            choices = load_examples(path, "multiple_choice")
            assert all(e.rejected for e in choices) and len(choices) == len(examples), path.name


@needs_shared
def test_shared_gsm8k_answers_are_numbers():
    for name in ("train.jsonl", "test.jsonl"):
        data = load_data(SHARED_DATA / "gsm8k" / name)
        assert data.layout == "gsm8k" and len(data.examples) > 1000
        for example in data.examples:
            float(example.answer)
    sample = (SAMPLES_DIR / "gsm8k" / "test_sample.jsonl").read_text().splitlines()
    assert sample == (SHARED_DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:60]


@needs_shared
def test_shared_alpaca_pairs_and_the_short_sample():
    source = SHARED_DATA / "alpaca-eval" / "pairs.jsonl"
    assert len(load_examples(source, "preference")) == 605
    lines = source.read_text(encoding="utf-8").splitlines()
    sample = (SAMPLES_DIR / "alpaca_eval" / "pairs_short.jsonl").read_text().splitlines()

    def size(line: str) -> int:
        record = json.loads(line)
        return len(record["instruction"]) + len(record["chosen"]) + len(record["rejected"])

    assert sample == [line for line in lines if size(line) <= max(map(size, sample))]
    assert len(sample) == 40


@needs_shared
def test_shared_bbh_samples_are_unchanged_prefixes():
    for path in sorted((SAMPLES_DIR / "bbh").glob("*.json")):
        shipped = json.loads(path.read_text())
        source = json.loads((SHARED_DATA / "bbh" / path.name).read_text())
        assert shipped["canary"] == source["canary"]
        assert shipped["examples"] == source["examples"][:60], path.name
