"""Small things users hit get one line naming the file, flag or row, and no engine starts."""

import json

import pytest
import yaml

from pmpo_ray.cli import main
from pmpo_ray.commands.score import read_prompt
from tests.failures import ONE_ROUND as OPTIMIZER
from tests.failures import SMALL_TASK as TASK
from tests.failures import finished_task_run, replace_open_engines


@pytest.fixture(autouse=True)
def no_engines(monkeypatch):
    """Every case here must fail before an engine (or Ray) starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was opened")

    replace_open_engines(monkeypatch, refuse)


@pytest.fixture
def run_dir(tmp_path):
    return finished_task_run(tmp_path / "run")


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pmpo {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("command", ["evaluate", "report"])
@pytest.mark.parametrize(
    "damage",
    [lambda text: text[: len(text) // 2], lambda text: b"\xff\xfe\x00garbage"],
    ids=["truncated", "binary"],
)
def test_damaged_result_json_is_named(run_dir, command, damage, capsys):
    path = run_dir / "result.json"
    damaged = damage(path.read_text())
    path.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
    assert main([command, str(run_dir)]) == 2
    line = one_error_line(capsys, command)
    assert f"{path}: not valid JSON" in line or f"{path}: not UTF-8 text" in line


def test_prompt_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(ValueError, match=f"--prompt {path}: not UTF-8 text"):
        read_prompt(str(path))


@pytest.mark.parametrize(
    "text",
    ["Answer with one word. " * 80, "x" * 300, "Answer.\n" + "y" * 5000],
    ids=["1760-chars", "one-long-word", "over-4096"],
)
def test_long_inline_prompt_is_text_not_a_file_name(text):
    assert read_prompt(text) == text


def test_prompt_file_is_read(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("Think.\n")
    assert read_prompt(str(path)) == "Think."


def test_long_inline_prompt_reaches_the_data_check(tmp_path, capsys):
    prompt = "Answer with exactly one word and nothing else. " * 35  # ~1,600 characters
    data, out = tmp_path / "none.jsonl", tmp_path / "s.parquet"
    code = main(["score", "--prompt", prompt, "--data", str(data), "--out", str(out)])
    assert code == 2  # the data is missing, so the prompt was accepted as text
    assert "none.jsonl: missing" in one_error_line(capsys, "score")


def test_bad_flag_value_is_blamed_on_the_flag_not_the_yaml(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"task": TASK, "optimizer": OPTIMIZER}))
    code = main(["optimize", str(job), "--out", str(tmp_path / "run"), "--iterations", "-1"])
    assert code == 2
    line = one_error_line(capsys, "optimize")
    assert "--iterations: Input should be greater than or equal to 0; got -1" in line
    assert str(job) not in line


def test_yaml_error_still_names_the_yaml(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"task": TASK, "optimizer": {"iterations": -3}}))
    assert main(["optimize", str(job), "--out", str(tmp_path / "run"), "--seed", "1"]) == 2
    assert f"{job}: field 'optimizer.iterations'" in one_error_line(capsys, "optimize")


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--iterations", "-2"], "--iterations: Input should be greater than or equal to 0"),
        (
            ["--set", "scorer.replicas.num_replicas=0"],
            "--set scorer.replicas.num_replicas: Input should be greater than or equal to 1",
        ),
        (["--set", "optimizer.bogus=1"], "--set optimizer.bogus: Extra inputs are not permitted"),
        (["--set", "name.x=1"], "--set name.x: field 'name' holds 's', not a mapping"),
    ],
    ids=["iterations", "set-range", "set-unknown", "set-into-a-value"],
)
def test_suite_flags_are_checked_and_named_before_ray(tmp_path, flags, expected, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "tasks": [{"task": TASK}]}))
    assert main(["suite", str(suite), "--out", str(tmp_path / "out"), *flags]) == 2
    assert expected in one_error_line(capsys, "suite")
    assert not (tmp_path / "out").exists()


def test_score_flag_out_of_range_is_one_line(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"input": "2+2", "target": "4"}\n')
    argv = ["score", "--prompt", "p", "--data", str(data), "--out", str(tmp_path / "s.parquet")]
    assert main([*argv, "--replicas", "0"]) == 2
    assert "--replicas: Input should be greater than or equal to 1" in one_error_line(
        capsys, "score"
    )


def test_evaluate_flag_out_of_range_is_one_line_naming_the_flag(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--max-examples", "0"]) == 2
    line = one_error_line(capsys, "evaluate")
    assert "--max-examples: Input should be greater than or equal to 1; got 0" in line


def test_too_long_row_fails_with_the_tokenizer_alone(tmp_path, capsys):
    config = tmp_path / "scoring.yaml"
    config.write_text(yaml.safe_dump({"scorer": {"engine": {"model": {"max_model_len": 64}}}}))
    data = tmp_path / "d.jsonl"
    rows = [{"input": "short", "target": "yes"}, {"input": "word " * 200, "target": "no"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "s.parquet"
    argv = ["score", "--prompt", "p", "--data", str(data), "--out", str(out)]
    assert main([*argv, "--config", str(config)]) == 2
    line = one_error_line(capsys, "score")
    assert "example '2'" in line and "over the model's window of 64" in line
    assert not out.exists()
