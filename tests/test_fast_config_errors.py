"""A bad config, flag, data file or output folder fails before Ray, vLLM, torch or transformers
is imported: those imports take seconds idle and close to a minute on a loaded machine.

Each case runs the command in a fresh interpreter (a test process has imported everything
already) and reports which heavy modules that interpreter loaded."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("ray", "vllm", "torch", "transformers")
TASK = {"name": "t", "data": "builtin:bbh/navigate.json", "initial_prompt": "Answer."}

# Runs an entrypoint's main(argv), then prints its exit code and the heavy modules loaded.
RUNNER = """
import json, sys
entry, argv = sys.argv[1], sys.argv[2:]
if entry == "pmpo":
    from pmpo_ray.cli import main
else:
    from pipelines.optimize_suite import main
code = main(argv)
heavy = sorted(name for name in HEAVY if name in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


def run_entry(entry: str, *argv) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, entry, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def write_yaml(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


BROKEN_SUITES = {
    "yaml-syntax": ("name: s\ntasks:\n  - task: {name: t, data: x.json\n", "not valid YAML"),
    "unknown-field": (
        {"name": "s", "bogus": 1, "tasks": [{"task": TASK}]},
        "field 'bogus': Extra inputs are not permitted",
    ),
    "missing-data": (
        {"name": "s", "tasks": [{"task": TASK | {"data": "/nonexistent/d.jsonl"}}]},
        "/nonexistent/d.jsonl: missing",
    ),
    "bad-row": (
        {"name": "s", "tasks": [{"task": TASK | {"data": "{data}", "format": "multiple_choice"}}]},
        "matches no option",
    ),
}


@pytest.mark.parametrize("entry", ["pmpo", "pipelines"])
@pytest.mark.parametrize("case", sorted(BROKEN_SUITES))
def test_broken_suite_fails_without_heavy_imports(tmp_path, entry, case):
    config, message = BROKEN_SUITES[case]
    bad_row = {"examples": [{"input": "Q?\nOptions:\n(A) Yes\n(B) No", "target": "(C)"}]}
    data = tmp_path / "bad.json"
    data.write_text(json.dumps(bad_row))
    if isinstance(config, dict):
        config = json.loads(json.dumps(config).replace("{data}", str(data)))
    path = write_yaml(tmp_path / "suite.yaml", config)
    out = tmp_path / "out"
    argv = ["suite", path] if entry == "pmpo" else ["--config", path]
    report, stderr = run_entry(entry, *argv, "--out", out)
    assert report["code"] == 2 and message in stderr
    assert report["heavy"] == []
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["optimize", "{job}", "--out", "{tmp}/run", "--iterations", "-1"], "--iterations"),
        (["optimize", "{job}", "--out", "{tmp}/no/run"], "does not exist"),
        (["suite", "{suite}", "--out", "{tmp}/no/out"], "does not exist"),
        (
            ["score", "--prompt", "p", "--data", "{tmp}/none.jsonl", "--out", "{tmp}/s.pq"],
            "missing",
        ),
        (["evaluate", "{tmp}/no-run"], "no such run folder"),
        (["report", "{tmp}/no-run"], "no such run folder"),
    ],
    ids=["optimize-flag", "optimize-out", "suite-out", "score-data", "evaluate", "report"],
)
def test_other_user_errors_fail_without_heavy_imports(tmp_path, argv, message):
    job = write_yaml(tmp_path / "job.yaml", {"task": TASK})
    suite = write_yaml(tmp_path / "suite.yaml", {"name": "s", "tasks": [{"task": TASK}]})
    names = {"job": job, "suite": suite, "tmp": tmp_path}
    report, stderr = run_entry("pmpo", *[part.format(**names) for part in argv])
    assert report["code"] == 2 and message in stderr
    assert report["heavy"] == []
