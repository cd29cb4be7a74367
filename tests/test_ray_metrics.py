"""The suite's Ray metrics (suite/ray_metrics.py) on a real loopback head: a tiny simulated
suite runs as a `ray job submit` job, then the head's Prometheus endpoint
(`--metrics-export-port`) shows each metric with what the run wrote (rounds.jsonl, the task
folders). Ray's agent drops a gauge two report intervals after it was last recorded, and
RayMetrics records again only while its driver lives, so the job's driver waits, once the
suite is done, until the test has scraped. The tiny suite on the real model also shows
vLLM's own metrics from its replica (its Ray stat logger needs `ray[serve]`, a dependency)."""

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.loopback_head import ENV, RAY, loopback_head
from tests.test_cluster_job import REPO, submit_job, wait_for_job

SUITE = """
name: metered
optimizer: {iterations: 2, hard_cases: 1, rewrites_per_case: 2}
tasks:
  - task: {name: navigate, data: "builtin:bbh/navigate.json", format: supervised,
           initial_prompt: "Let's think step by step.", max_train: 4}
  - task: {name: sports_understanding, data: "builtin:bbh/sports_understanding.json",
           format: supervised, initial_prompt: "Let's think step by step.", max_train: 4}
scorer:
  engine: {backend: simulated}
  replicas: {num_replicas: 1, num_cpus: 0}
"""

# The job: the suite with RayMetrics as its round callback (one that run_suite adds itself for
# the same suite records the same values), then a wait for the test's scrape.
ENTRYPOINT = """
import sys, time
from pathlib import Path

import ray

from pmpo_ray import optimize_suite
from pmpo_ray.suite.ray_metrics import RayMetrics

config, out, scraped, *iterations = sys.argv[1:]
ray.init()  # the head in $RAY_ADDRESS
iterations = int(iterations[0]) if iterations else None
optimize_suite(config, out=out, iterations=iterations, on_round=RayMetrics("metered"))
Path(out, "driver-waiting").touch()
deadline = time.time() + 300
while not Path(scraped).exists() and time.time() < deadline:
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def metrics_head(tmp_path_factory) -> tuple[str, str]:
    """A loopback head of this module's own (tests/loopback_head.py; metrics every second):
    its dashboard address and its node's Prometheus endpoint. Not the session's shared head:
    vLLM's counters of other tests' jobs would still be in its endpoint."""
    with loopback_head(tmp_path_factory.mktemp("metrics-head")) as head:
        yield head.address, head.metrics_url


def test_no_metrics_without_ray():
    """Engines in process (no Ray connected): nothing to export to, and Ray is not imported."""
    code = (
        "import sys; from pmpo_ray.suite.ray_metrics import ray_metrics\n"
        "with ray_metrics('metered') as metrics: assert metrics is None\n"
        "assert 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_the_grafana_dashboard_charts_every_metric_and_no_other():
    from pmpo_ray.suite.ray_metrics import METRICS

    dashboard = json.loads((REPO / "cluster/grafana/pmpo-ray-dashboard.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert set(re.findall(r"ray_pmpo_(\w+)", " ".join(exprs))) == set(METRICS)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for expr in exprs:  # brackets balance in every query
        assert all(expr.count(a) == expr.count(b) for a, b in ("()", "{}", "[]")), expr


@pytest.mark.ray
@pytest.mark.cluster
def test_the_metrics_endpoint_shows_what_the_run_wrote(metrics_head, tmp_path):
    address, endpoint = metrics_head
    (tmp_path / "suite.yaml").write_text(SUITE)
    with suite_job(address, tmp_path / "suite.yaml", tmp_path) as out:
        expected = expected_samples(out)
        found = scrape_until(endpoint, expected)
        # Ray drops a gauge value 2 report intervals (2 s here) after it was recorded: the
        # driver records the last values again, so they outlive the last round.
        time.sleep(5)
        later = pmpo_samples(scrape(endpoint))
    for key, value in expected.items():
        assert found.get(key) == pytest.approx(value, rel=1e-9), key
    assert later == found


@pytest.mark.engine
@pytest.mark.ray
@pytest.mark.cluster
def test_vllm_replicas_export_vllms_own_metrics(metrics_head, tmp_path):
    """vLLM's Ray stat logger in the scorer's replica (engines/vllm_engine.py): its request
    and token counts are the run's."""
    address, endpoint = metrics_head
    with suite_job(address, REPO / "pipelines/suites/tiny.yaml", tmp_path, iterations=1) as out:
        rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]

        def total(field: str) -> int:
            return sum(line.get(field, 0) for line in rounds)

        # vLLM must generate a token for each scoring request too
        generated = total("generation_tokens") + total("scoring_requests")
        expected = {"ray_vllm_generation_tokens_total": generated}
        # Within 1%: a clean-clone run counted 1,066 of the run's 1,069 (vLLM's own count of
        # generated tokens, not ours); no metrics, or another run's, would be far off.
        found = scrape_until(endpoint, expected, read=vllm_totals, rel=0.01)
    assert found.get("ray_vllm_generation_tokens_total") == pytest.approx(generated, rel=0.01)
    # a request for n rewrites is n requests to vLLM
    requests = total("scoring_requests") + total("generation_requests")
    assert found["ray_vllm_request_success_total"] >= requests
    assert found["ray_vllm_prompt_tokens_total"] >= total("scoring_tokens")


@contextmanager
def suite_job(address: str, config: Path, tmp_path: Path, iterations: int | None = None):
    """The suite submitted as a job with RayMetrics on its rounds; yields its out folder once
    the suite is done, while its driver waits; then lets the driver end."""
    (tmp_path / "entry.py").write_text(ENTRYPOINT)
    out, scraped = tmp_path / "out", tmp_path / "scraped"
    job_id = f"pmpo-test-{uuid.uuid4().hex[:8]}"
    command = [RAY, "job", "submit", "--address", address, "--submission-id", job_id]
    command += ["--no-wait", "--working-dir", str(REPO), "--", sys.executable]
    command += [str(tmp_path / "entry.py"), str(config), str(out), str(scraped)]
    submitted = submit_job(command + ([str(iterations)] if iterations else []))
    assert submitted.returncode == 0, submitted.stderr
    try:
        wait_for_file(out / "driver-waiting", address, job_id)
        yield out
    finally:
        scraped.touch()
    assert wait_for_job(address, job_id) == "SUCCEEDED"


def expected_samples(out: Path) -> dict[tuple[str, tuple], float]:
    """(Prometheus name, its pmpo labels) -> the value the run's files say."""
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    results = {
        task: json.loads((out / "tasks" / task / "result.json").read_text())
        for task in ("navigate", "sports_understanding")
    }
    expected = {
        sample("rounds_done"): len(rounds),
        sample("tasks_finished"): 2,
        sample("tasks_active"): 0,
    }
    for task, result in results.items():
        expected[sample("best_loss", task=task)] = result["best_loss"]
    for name, field in (
        ("forward_passes", "scoring_requests"),
        ("tokens_scored", "scoring_tokens"),
        ("tokens_generated", "generation_tokens"),
    ):
        total = sum(line.get(field, 0) for line in rounds)
        assert total == sum(result["work"][name] for result in results.values()) > 0
        expected[sample(name)] = total
    expected[sample("pool_replicas", pool="scorer")] = 1
    expected[sample("pool_live_replicas", pool="scorer")] = 1
    busy = rounds[-1]["scorer_busy_fraction"]
    expected[sample("pool_busy_fraction", pool="scorer")] = busy
    return expected


def sample(name: str, **labels: str) -> tuple[str, tuple]:
    """A pmpo metric's Prometheus name and labels, as `pmpo_samples` keys them."""
    return f"ray_pmpo_{name}", tuple(sorted({"suite": "metered", **labels}.items()))


def scrape(endpoint: str) -> str:
    return urllib.request.urlopen(endpoint, timeout=10).read().decode()


def scrape_until(
    endpoint: str, expected: dict, read=None, timeout: float = 60, rel: float = 1e-9
) -> dict:
    """The endpoint's samples (`read`: pmpo_samples), scraped until they hold every expected
    value to within `rel` (Ray's emitters report every interval) or `timeout` passes."""
    read = read or pmpo_samples
    deadline = time.time() + timeout
    while True:
        found = read(scrape(endpoint))
        matches = all(found.get(k) == pytest.approx(v, rel=rel) for k, v in expected.items())
        if matches or time.time() > deadline:
            return found
        time.sleep(1)


def pmpo_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> (sample name, its `suite`/`task`/`pool` labels) -> value, for the
    pmpo metrics (Ray adds labels of its own: session, node, worker, ...)."""
    samples = {}
    for sample in parsed_samples(text):
        if sample.name.startswith("ray_pmpo_"):
            labels = sorted(
                (k, v) for k, v in sample.labels.items() if k in ("suite", "task", "pool")
            )
            samples[(sample.name, tuple(labels))] = sample.value
    return samples


def vllm_totals(text: str) -> dict[str, float]:
    """Sample name -> its values summed over every label set, for vLLM's metrics."""
    totals = defaultdict(float)
    for sample in parsed_samples(text):
        if sample.name.startswith("ray_vllm_"):
            totals[sample.name] += sample.value
    return dict(totals)


def parsed_samples(text: str):
    from prometheus_client.parser import text_string_to_metric_families

    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def wait_for_file(path: Path, address: str, job_id: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        status = subprocess.run(
            [RAY, "job", "status", "--address", address, job_id],
            capture_output=True,
            text=True,
            env=ENV,
        ).stdout.upper()
        if time.time() > deadline or any(s in status for s in ("FAILED", "STOPPED", "SUCC")):
            logs = subprocess.run(
                [RAY, "job", "logs", "--address", address, job_id],
                capture_output=True,
                text=True,
                env=ENV,
            ).stdout
            raise AssertionError(f"{path} never appeared ({status.strip()}): {logs[-3000:]}")
        time.sleep(1)
