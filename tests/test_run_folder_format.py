"""Each run-folder file is one record, written and read by the same class: it reads back as
written, a damaged field is named in one line, a folder of another pmpo-ray version (no format
marker, or another one) is refused as such, and a config.yaml from before the scorer and
rewriter became pools still reads."""

import json

import pyarrow as pa
import pytest
import yaml

from pmpo_ray.evaluation.resume import kept_evaluation
from pmpo_ray.run_folder import layout
from pmpo_ray.run_folder.evaluation_file import read_evaluation
from pmpo_ray.run_folder.files import FORMAT, FORMAT_KEY
from pmpo_ray.run_folder.read import read_run_folder, read_suite_summary, read_task_config
from pmpo_ray.run_folder.write import write_evaluation
from tests.test_run_folder import edit_json, suite_run, write_suite  # noqa: F401 - a fixture

BASIS = {"settings": {"max_examples": 5}, "result": "r", "heldout": "h"}


def prompt_row(name, text, accuracy=0.5):
    return {
        "name": name,
        "text": text,
        "heldout_ce": 1.0,
        "heldout_loss": 1.5,
        "pairwise_accuracy": None,
        "option_accuracy": 0.25,
        "option_accuracy_norm": 0.75,
        "forward_passes": 4,
        "tokens_scored": 40,
        "accuracy": accuracy,
        "tokens_generated": 8,
        "seconds": 1.0,
        "from_cache": False,
        "ci95": {"heldout_ce": [0.8, 1.2]},
        "vs_initial": {}
        if name == "initial"
        else {"heldout_ce": {"change": -0.1, "ci95": [-0.3, 0.05]}},
        "choices": {"(A)": 0.5, "(B)": 0.5},
    }


def evaluation(**changes):
    """evaluation.json's content as evaluation/evaluate_run.py builds it."""
    content = {
        "task_id": "pairs",
        "format": "multiple_choice",
        "answer_match": "exact",
        "n_train": 4,
        "n_heldout": 2,
        "prompts": [
            prompt_row("step_by_step", "Let's think step by step."),
            prompt_row("initial", "Be helpful."),
            prompt_row("no_instruction", ""),
            prompt_row("optimized", "Be very helpful.", accuracy=None),
        ],
        "gold_shares": {"(A)": 0.5, "(B)": 0.5},
        "training": {"initial_loss": 2.0, "best_loss": 1.0},
        "generation_counterfactual": {
            "candidates_scored": 3,
            "train_examples": 4,
            "mean_answer_tokens": 2.5,
            "answer_length_from": "answers",
            "generated_tokens": 30,
            "loss_based_tokens_generated": 10,
        },
        "seconds": 4.0,
        "basis": BASIS,
    }
    return {**content, **changes}


@pytest.fixture
def suite(tmp_path, suite_run):  # noqa: F811 - the imported fixture
    out = tmp_path / "suite"
    write_suite(out, suite_run)
    return out


def test_result_json_carries_the_format_marker(suite):
    result = json.loads((suite / "tasks" / "pairs" / layout.RESULT).read_text())
    assert result[FORMAT_KEY] == FORMAT


@pytest.mark.parametrize("marker", [None, 0, FORMAT + 1], ids=["none", "older", "newer"])
def test_a_folder_of_another_version_is_refused_in_one_line(suite, marker):
    path = suite / "tasks" / "pairs" / layout.RESULT

    def mark(result):
        result.pop(FORMAT_KEY)
        result.pop("rejected_rewrites")  # what an old folder also lacks: not named
        if marker is not None:
            result[FORMAT_KEY] = marker

    edit_json(path, mark)
    with pytest.raises(ValueError) as error:
        read_run_folder(suite)
    message = str(error.value)
    assert message.startswith(f"{path}: written by another pmpo-ray version (")
    assert "optimize again with this version" in message and "\n" not in message
    assert ("no run_folder_format" if marker is None else f"{marker} run_folder_format") in message


def test_a_config_of_another_task_is_named(suite):
    pairs = suite / "tasks" / "pairs"
    (pairs / layout.CONFIG).write_text((suite / "tasks" / "navigate" / layout.CONFIG).read_text())
    with pytest.raises(ValueError) as error:
        read_run_folder(suite)
    assert str(error.value) == (
        f"{pairs / layout.CONFIG}: config is for task 'navigate', but "
        f"{pairs / layout.RESULT} is task 'pairs'"
    )


def test_suite_summary_reads_back_as_written(suite, suite_run):  # noqa: F811
    written = json.loads((suite / layout.SUITE_SUMMARY).read_text())
    assert read_suite_summary(suite) == written and list(written) == ["navigate", "pairs"]
    edit_json(suite / layout.SUITE_SUMMARY, lambda s: s["pairs"].pop("best_prompt"))
    with pytest.raises(ValueError, match=r"suite\.json: field 'pairs\.best_prompt': Field req"):
        read_run_folder(suite)


def test_an_engine_shaped_scorer_in_config_yaml_reads_as_its_pools_engine(suite):
    path = suite / "tasks" / "pairs" / layout.CONFIG
    current = read_task_config(path)
    raw = yaml.safe_load(path.read_text())
    engine = raw["scorer"]["engine"]
    raw["scorer"] = engine  # the shape written before scorer: became a pool
    raw["rewriter"] = dict(engine, dtype="float32")
    path.write_text(yaml.safe_dump(raw))
    old = read_task_config(path)
    assert old.scorer.engine == current.scorer.engine and old.rewriter.engine.dtype == "float32"
    assert read_run_folder(suite).tasks[1].config == old


def test_evaluation_json_is_written_and_read_through_its_record(tmp_path, suite):
    task_dir = suite / "tasks" / "pairs"
    predictions = pa.table({"prompt_name": ["initial"]})
    write_evaluation(task_dir, evaluation(), predictions)
    assert json.loads((task_dir / layout.EVALUATION).read_text()) == evaluation()

    read = read_evaluation(task_dir / layout.EVALUATION)
    assert [p.name for p in read.prompts] == [
        "initial",
        "optimized",
        "no_instruction",
        "step_by_step",
    ]
    optimized = read.prompt("optimized")
    assert optimized.accuracy is None and optimized.work.forward_passes == 4
    assert read.counterfactual.length_from == "answers"
    assert read_run_folder(suite).tasks[1].evaluation == read
    assert kept_evaluation(task_dir, BASIS) == evaluation()
    assert kept_evaluation(task_dir, {**BASIS, "result": "other"}) is None


def test_evaluation_content_that_would_not_read_is_never_written(tmp_path):
    bad = evaluation(prompts=[prompt_row("initial", "x")])
    with pytest.raises(ValueError, match="field 'prompts': no entry named 'optimized'"):
        write_evaluation(tmp_path, bad, None)
    assert list(tmp_path.iterdir()) == []


def test_an_evaluation_without_option_accuracy_is_named_and_evaluated_again(tmp_path):
    old = evaluation()
    for row in old["prompts"]:
        del row["option_accuracy"]
    path = tmp_path / layout.EVALUATION
    path.write_text(json.dumps(old))
    (tmp_path / layout.PREDICTIONS).write_bytes(b"")
    with pytest.raises(ValueError) as error:
        read_evaluation(path)
    assert str(error.value) == (
        f"{path}: field 'prompts.0.option_accuracy': Field required (and 3 more)"
    )
    assert kept_evaluation(tmp_path, BASIS) is None


def test_a_round_line_without_its_wall_time_is_named(suite):
    log = layout.rounds_log_path(suite)
    log.write_text('{"round": 1, "wall_seconds": 2.5, "scorer_busy_fraction": 0.5}\n{"round": 2}\n')
    with pytest.raises(ValueError, match=r"rounds\.jsonl line 2: field 'wall_seconds': Field req"):
        read_run_folder(suite)
    log.write_text('{"round": 1, "wall_seconds": 2.5, "scorer_busy_fraction": 0.5}\n')
    assert read_run_folder(suite).rounds == (
        {"round": 1, "wall_seconds": 2.5, "scorer_busy_fraction": 0.5},
    )
