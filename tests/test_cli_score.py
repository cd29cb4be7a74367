import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pmpo_ray.cli import main


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bad_data_fails_before_loading_a_model_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, [{"input": "a", "target": "b"}, {"input": "c", "target": ""}])
    out = tmp_path / "scores.parquet"
    code = main(
        ["score", "--prompt", "p", "--data", str(data), "--out", str(out), "--backend", "hf"]
    )
    assert code == 2
    assert "d.jsonl: row 2: field 'target' is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [data]


def test_unknown_backend_in_config_names_the_field(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("scorer:\n  engine:\n    backend: tgi\n")
    code = main(
        [
            "score",
            "--prompt",
            "p",
            "--data",
            "x.jsonl",
            "--out",
            str(tmp_path / "o.parquet"),
            "--config",
            str(config),
        ]
    )
    assert code == 2
    assert "field 'scorer.engine.backend'" in capsys.readouterr().err


def test_unknown_backend_flag_is_rejected():
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--prompt", "p", "--data", "x", "--out", "o", "--backend", "tgi"])
    assert exit_info.value.code == 2


def test_missing_output_folder_is_reported(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, [{"input": "a", "target": "b"}])
    code = main(
        ["score", "--prompt", "p", "--data", str(data), "--out", str(tmp_path / "no" / "o.parquet")]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


def run_score(tmp_path, *flags, name="scores.parquet"):
    data = tmp_path / "d.jsonl"
    write_jsonl(
        data,
        [{"input": "2 + 2 =", "target": "4"}, {"input": "Capital of France?", "target": "Paris"}],
    )
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Answer briefly, and only with the answer itself, in one word.\n")
    out = tmp_path / name
    command = [sys.executable, "-m", "pmpo_ray.cli", "score", "--backend", "hf"]
    command += ["--prompt", str(prompt), "--data", str(data), "--out", str(out), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result, pq.read_table(out).to_pylist()


@pytest.mark.engine
def test_score_command_writes_one_row_per_example(tmp_path):
    result, table = run_score(tmp_path)
    assert [r["target"] for r in table] == ["4", "Paris"]
    for row in table:
        assert row["ce_mean"] == pytest.approx(-row["logprob_sum"] / row["n_tokens"])
        assert row["n_tokens"] >= 1
    assert "mean cross-entropy per token over 2 examples" in result.stdout


@pytest.mark.engine
def test_no_prefix_sharing_reports_the_same_numbers(tmp_path):
    _, shared = run_score(tmp_path)
    _, naive = run_score(tmp_path, "--no-prefix-sharing", name="naive.parquet")
    assert [r["n_tokens"] for r in naive] == [r["n_tokens"] for r in shared]
    for a, b in zip(naive, shared):
        assert a["ce_mean"] == pytest.approx(b["ce_mean"], abs=1e-4)
        assert a["is_greedy"] == b["is_greedy"]
