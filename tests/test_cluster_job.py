"""The real cluster path: `ray start --head` on loopback, `ray job submit` of the tiny suite
with the real default model, then the head is stopped by the process id this test started."""

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.loopback_head import ENV, RAY

pytestmark = [pytest.mark.cluster, pytest.mark.engine]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ray_head(loopback_ray_head) -> str:
    """The session's loopback head (tests/loopback_head.py): its dashboard address."""
    return loopback_ray_head.address


def submit_job(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent has not registered yet: the
    dashboard answers `ray job list` a little before the agent on its node takes jobs."""
    deadline = time.time() + timeout
    while True:
        submit = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=ENV)
        if "No available agent" not in submit.stderr or time.time() > deadline:
            return submit
        time.sleep(3)


def test_ray_job_submit_runs_the_tiny_suite(ray_head, tmp_path):
    out = tmp_path / "tiny"
    job_id = f"pmpo-test-{uuid.uuid4().hex[:8]}"
    submit = submit_job(
        [
            RAY,
            "job",
            "submit",
            "--address",
            ray_head,
            "--submission-id",
            job_id,
            "--no-wait",
            "--working-dir",
            str(REPO),
            "--",
            sys.executable,
            "-m",
            "pipelines.optimize_suite",
            "--config",
            "pipelines/suites/tiny.yaml",
            "--out",
            str(out),
            "--iterations",
            "1",
            "--evaluate",
            "--set",
            "evaluation.max_examples=6",
            "--set",
            "evaluation.max_answer_tokens=32",
        ]
    )
    assert submit.returncode == 0, submit.stderr
    status = wait_for_job(ray_head, job_id)
    logs = subprocess.run(
        [RAY, "job", "logs", "--address", ray_head, job_id], capture_output=True, text=True, env=ENV
    ).stdout
    assert status == "SUCCEEDED", logs[-3000:]
    summary = json.loads((out / "suite.json").read_text())
    assert set(summary) == {"navigate", "sports_understanding"}
    for row in summary.values():
        assert row["best_loss"] <= row["initial_loss"]
        assert row["iterations"] == 1
    assert (out / "tasks" / "navigate" / "history.parquet").exists()
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert rounds and all(0 <= r["scorer_busy_fraction"] <= 1.0 + 1e-6 for r in rounds)
    assert all(0 < r["scoring_tokens_computed"] <= r["scoring_tokens"] for r in rounds)
    assert all(r["scoring_batches"] >= 1 and r["scorer_prep_us_per_row"] > 0 for r in rounds)
    check_plan(out, iterations=1)
    check_evaluation_and_report(out)


def check_plan(out, iterations):
    """`pmpo suite --plan`'s forward passes are within 10% of what the real run spent in all,
    and within 30% per task: which of a task's few sampled rewrites pass vetting varies from
    task to task (one tiny run: 32 and 40 forward passes where the plan said 39 for each),
    and the plan's acceptance is a measured average."""
    import pmpo_ray

    plan = pmpo_ray.plan(REPO / "pipelines/suites/tiny.yaml", iterations=iterations)
    spent = {
        task.task_id: json.loads((out / "tasks" / task.task_id / "result.json").read_text())[
            "work"
        ]["forward_passes"]
        for task in plan.tasks
    }
    for task in plan.tasks:
        gap = abs(task.forward_passes - spent[task.task_id]) / spent[task.task_id]
        assert gap <= 0.30, (task.task_id, task.forward_passes, spent[task.task_id])
    planned = sum(task.forward_passes for task in plan.tasks)
    assert abs(planned - sum(spent.values())) / sum(spent.values()) <= 0.10, (planned, spent)


def check_evaluation_and_report(out):
    """The job's held-out evaluation (real model), then `pmpo report` on its folder."""
    from tests.browser_check import check_page

    for task_id in ("navigate", "sports_understanding"):
        evaluation = json.loads((out / "tasks" / task_id / "evaluation.json").read_text())
        rows = {row["name"]: row for row in evaluation["prompts"]}
        assert set(rows) == {"initial", "optimized", "no_instruction", "step_by_step"}
        assert evaluation["n_heldout"] == 6
        for row in rows.values():
            assert row["heldout_ce"] > 0 and 0 <= row["accuracy"] <= 1
            assert row["tokens_generated"] > 0
        # the tiny suite starts from "Let's think step by step.": one text, one measurement
        assert rows["initial"]["heldout_ce"] == rows["step_by_step"]["heldout_ce"]
    report = subprocess.run(
        [sys.executable, "-m", "pmpo_ray.cli", "report", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert report.returncode == 0, report.stderr
    markdown = (out / "report.md").read_text()
    for task_id in ("navigate", "sports_understanding"):
        assert task_id in markdown
    assert "![" in markdown and "report_files/" in markdown
    page = check_page(out / "report.html")
    assert page.problems == () and page.images >= 2


def wait_for_job(address, job_id, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = subprocess.run(
            [RAY, "job", "status", "--address", address, job_id],
            capture_output=True,
            text=True,
            env=ENV,
        )
        said = (result.stdout + result.stderr).upper()
        for state in ("SUCCEEDED", "FAILED", "STOPPED"):
            if state in said:
                return state
        time.sleep(5)
    return "TIMEOUT"


# One task, two short rounds: a job that is stopped after its first round and submitted again.
RETRIED_SUITE = """
name: retried
optimizer: {iterations: 3, hard_cases: 1, rewrites_per_case: 2, max_rewrite_tokens: 48}
tasks:
  - task:
      name: navigate
      data: builtin:bbh/navigate.json
      format: multiple_choice
      initial_prompt: Let's think step by step.
      max_train: 4
scorer:
  replicas: {num_replicas: 1, num_cpus: 1}
"""


def test_a_stopped_job_submitted_again_resumes_to_the_uninterrupted_result(ray_head, tmp_path):
    """What a RayJob retry does (cluster/kuberay/rayjob.yaml): the same command, `--resume
    auto`, submitted again after the driver was stopped mid-run, continues from its last
    finished round and ends as a run that was never stopped."""
    config = tmp_path / "retried.yaml"
    config.write_text(RETRIED_SUITE)

    def submit(out: Path) -> str:
        job_id = f"pmpo-test-{uuid.uuid4().hex[:8]}"
        command = [RAY, "job", "submit", "--address", ray_head, "--submission-id", job_id]
        command += ["--no-wait", "--working-dir", str(REPO), "--", sys.executable, "-m"]
        command += ["pipelines.optimize_suite", "--config", str(config), "--out", str(out)]
        submitted = submit_job([*command, "--resume", "auto"])
        assert submitted.returncode == 0, submitted.stderr
        return job_id

    whole = tmp_path / "whole"
    assert wait_for_job(ray_head, submit(whole)) == "SUCCEEDED"

    cut = tmp_path / "cut"
    job_id = submit(cut)
    rounds = cut / "rounds.jsonl"
    deadline = time.time() + 600
    while not (rounds.exists() and rounds.read_text().strip()) and time.time() < deadline:
        time.sleep(0.1)
    # The dashboard's REST call, not `ray job stop`: the CLI's start-up alone can outlast a
    # round on a loaded machine, and the run must be stopped with rounds still to play.
    stop_request = urllib.request.Request(f"{ray_head}/api/jobs/{job_id}/stop", method="POST")
    with urllib.request.urlopen(stop_request, timeout=30) as response:
        assert json.loads(response.read())["stopped"]
    assert wait_for_job(ray_head, job_id) == "STOPPED"
    assert not (cut / "suite.json").exists()  # stopped with rounds 2 and 3 still to play

    assert wait_for_job(ray_head, submit(cut)) == "SUCCEEDED"
    assert history(cut) == history(whole)
    assert json.loads((cut / "suite.json").read_text())["navigate"]["iterations"] == 3


def history(out: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    table = pq.read_table(out / "tasks" / "navigate" / "history.parquet")
    return list(zip(*(table.column(name).to_pylist() for name in ("text", "loss", "kept"))))


def test_a_jobs_runtime_env_reaches_the_replicas(ray_head, tmp_path):
    """An API key passed only with `ray job submit --runtime-env-json` reaches the rewriter's
    replicas (the head was started without it): the fake server refuses any request without
    it, and the job's rewrites all carry it."""
    from tests.fake_openai_server import SERVED_MODEL, FakeOpenAiServer

    secret = "sk-job-env-only"
    assert "PMPO_JOB_KEY" not in ENV
    with FakeOpenAiServer(required_key=secret) as server:
        config = tmp_path / "api.yaml"
        config.write_text(
            RETRIED_SUITE.replace("iterations: 3", "iterations: 1")
            + "  engine: {backend: simulated}\n"
            + "rewriter:\n"
            + f"  engine: {{backend: openai, base_url: '{server.url}', model: {SERVED_MODEL}, "
            + "api_key_env: PMPO_JOB_KEY}\n"
            + "  replicas: {num_replicas: 1, num_cpus: 0}\n"
        )
        job_id = f"pmpo-test-{uuid.uuid4().hex[:8]}"
        runtime_env = json.dumps({"env_vars": {"PMPO_JOB_KEY": secret}})
        command = [RAY, "job", "submit", "--address", ray_head, "--submission-id", job_id]
        command += ["--no-wait", "--working-dir", str(REPO), "--runtime-env-json", runtime_env]
        command += ["--", sys.executable, "-m", "pipelines.optimize_suite", "--config"]
        submitted = submit_job([*command, str(config), "--out", str(tmp_path / "out")])
        assert submitted.returncode == 0, submitted.stderr
        assert wait_for_job(ray_head, job_id) == "SUCCEEDED"
        rewrites = server.recorded("/v1/chat/completions")
    assert rewrites and all(r.headers["Authorization"] == f"Bearer {secret}" for r in rewrites)
    assert secret.encode() not in b"".join(
        path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()
    )
