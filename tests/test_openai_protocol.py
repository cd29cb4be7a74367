"""The openai backend's protocol, against a fast fake OpenAI-compatible server
(tests/fake_openai_server.py, shaped like vLLM 0.32's): what it sends, how it reads answers,
what it retries and when it gives up, the checks `open_engines` makes before anything starts,
and that the API key goes only into the Authorization header.

Every test runs with an API key set and a fake that requires it, so each one also proves the
key is sent; no error message and no log line may contain it.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
import yaml

from pmpo_ray.engines import openai_engine, openai_http
from pmpo_ray.engines.chat import chat_messages
from pmpo_ray.engines.client import open_engines
from pmpo_ray.engines.openai_config import CANNOT_SCORE
from pmpo_ray.engines.openai_engine import OpenAiConfig, OpenAiEngine
from pmpo_ray.engines.openai_http import ServerError, ServerUnavailable
from pmpo_ray.engines.registry import PoolConfig
from pmpo_ray.engines.simulated_engine import SimulatedConfig
from pmpo_ray.requests import generate_requests, score_requests
from pmpo_ray.tasks.example import Example
from tests.fake_openai_server import (
    SERVED_MODEL,
    FakeOpenAiServer,
    completion_tokens,
    sample_finish,
    sample_text,
    token_logprob,
    token_rank,
)

KEY_ENV = "PMPO_TEST_OPENAI_KEY"
SECRET = "sk-test-7f3a9c1e5b2d4f60-do-not-leak"


# ----- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch):
    # Retries double from 0.5 s: the tests check what is retried and when it gives up, not
    # the wall-clock schedule (test_the_deadline_cuts_retries_short keeps the real one).
    monkeypatch.setattr(openai_http, "FIRST_BACKOFF_S", 0.01)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog):
    """Every test's log records, at every level, are checked for the key."""
    caplog.set_level(logging.DEBUG)
    yield
    assert SECRET not in caplog.text
    assert not any(SECRET in record.getMessage() for record in caplog.records)


_loaded_tokenizers: dict[str, object] = {}
_real_load_tokenizer = openai_engine.load_tokenizer


@pytest.fixture(autouse=True)
def tokenizer_loaded_once(monkeypatch):
    # Each engine and each scorer check loads its tokenizer (0.3 s): loaded for real once,
    # then shared, keeps the file within seconds. The tokenizer is only read, never changed.
    def load_once(config):
        if config.tokenizer not in _loaded_tokenizers:
            _loaded_tokenizers[config.tokenizer] = _real_load_tokenizer(config)
        return _loaded_tokenizers[config.tokenizer]

    monkeypatch.setattr(openai_engine, "load_tokenizer", load_once)


_built_engines: list[OpenAiEngine] = []


def new_engine(config: OpenAiConfig) -> OpenAiEngine:
    engine = OpenAiEngine(config)
    _built_engines.append(engine)
    return engine


@pytest.fixture(autouse=True)
def close_engines():
    yield
    while _built_engines:  # each holds a thread pool of request senders
        _built_engines.pop().close()


@pytest.fixture
def server(tokenizer):
    # /tokenize answers the real default-model ids, so the tokenizer round trip passes
    def tokenize(text):
        return tokenizer.encode(text, add_special_tokens=False)

    with FakeOpenAiServer(tokenize=tokenize, required_key=SECRET) as fake:
        yield fake


def openai_config(server: FakeOpenAiServer, **overrides) -> OpenAiConfig:
    settings = {
        "base_url": server.url,
        "model": SERVED_MODEL,
        "api_key_env": KEY_ENV,
        "retries": 3,
        "retry_deadline_s": 5.0,
        "timeout_s": 5.0,
        **overrides,
    }
    return OpenAiConfig(**settings)


def scorer_config(server: FakeOpenAiServer, **overrides) -> OpenAiConfig:
    return openai_config(server, tokenizer="default", **overrides)


def check_message(error: BaseException) -> str:
    """A user-facing error: one line, no key in it."""
    text = str(error)
    assert "\n" not in text, text
    assert SECRET not in text and SECRET not in repr(error)
    return text


def preflight_error(scorer: PoolConfig, rewriter: PoolConfig | None = None) -> str:
    with pytest.raises(ValueError) as caught:
        with open_engines(scorer, rewriter):
            pass
    return check_message(caught.value)


def closed_port_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def scoring_table():
    examples = [
        Example("after-a", "Which letter comes after A?", "B", rejected=("A", "(C)")),
        Example("sum", "What is 2 + 2?", "4", rejected=("10", "No")),
    ]
    prompts = [("terse", "Answer with one token."), ("none", "")]
    return score_requests(
        prompts, examples, task_id="t", kind="candidate", role="system", with_rejected=True
    )


def chat_bodies(server: FakeOpenAiServer) -> list[dict]:
    return [r.body for r in server.recorded("/v1/chat/completions")]


def one_request(**fields):
    settings = {"n": 1, "max_tokens": 16, **fields}
    return generate_requests([("Be brief.", "Name a colour.")], task_id="t", **settings)


# ----- scoring ------------------------------------------------------------------------------


def test_scores_are_read_from_the_prompt_logprobs_of_token_id_prompts(server):
    engine = new_engine(scorer_config(server))
    table = scoring_table()
    encoded = engine.prepare_score(table).encoded
    result = engine.score(table, with_token_logprobs=True)

    continuations = [r.token_ids[r.n_context :] for r in encoded]
    expected_sums = [sum(token_logprob(t) for t in tokens) for tokens in continuations]
    expected_greedy = [all(token_rank(t) == 1 for t in tokens) for tokens in continuations]
    assert set(expected_greedy) == {True, False}  # the table exercises both answers
    assert result.column("logprob_sum").to_pylist() == pytest.approx(expected_sums)
    assert result.column("is_greedy").to_pylist() == expected_greedy
    assert result.column("n_tokens").to_pylist() == [len(c) for c in continuations]
    per_token = [[token_logprob(t) for t in c] for c in continuations]
    assert result.column("token_logprobs").to_pylist() == [pytest.approx(v) for v in per_token]
    # every row sent whole, as token ids, asking only for prompt logprobs
    sent = [r.body for r in server.recorded("/v1/completions")]
    assert sorted(b["prompt"] for b in sent) == sorted(list(r.token_ids) for r in encoded)
    assert all(b["prompt_logprobs"] == 1 and b["max_tokens"] == 1 for b in sent)
    assert all(b["model"] == SERVED_MODEL for b in sent)
    assert result.column("n_computed_tokens").to_pylist() == [len(r.token_ids) for r in encoded]


def test_scoring_against_a_server_without_prompt_logprobs_says_it_cannot_score(server):
    engine = new_engine(scorer_config(server, retries=0))
    server.can_score = False
    with pytest.raises(ServerError) as caught:
        engine.score(scoring_table())
    assert CANNOT_SCORE in check_message(caught.value)


def test_scoring_without_a_tokenizer_says_how_to_fix_it(server):
    engine = new_engine(openai_config(server))
    with pytest.raises(ValueError) as caught:
        engine.score(scoring_table())
    assert "engine.tokenizer" in check_message(caught.value)
    assert server.requests == []


# ----- generation ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["system", "user"])
@pytest.mark.parametrize("prompt", ["Be brief.", ""])
def test_chat_messages_come_from_the_request_parts(server, role, prompt):
    engine = new_engine(openai_config(server))
    engine.generate(generate_requests([(prompt, "Name a colour.")], task_id="t", role=role))
    (body,) = chat_bodies(server)
    assert body["messages"] == chat_messages(prompt, "Name a colour.", role)
    assert body["model"] == SERVED_MODEL
    # without a prefill the server adds its own generation prompt
    assert "continue_final_message" not in body and "add_generation_prompt" not in body


def test_sampling_fields_are_carried(server):
    engine = new_engine(openai_config(server))
    engine.generate(one_request(n=3, temperature=0.7, top_p=0.9, max_tokens=32, seed=5))
    (body,) = chat_bodies(server)
    assert body["n"] == 3 and body["max_tokens"] == 32 and body["seed"] == 5
    assert body["temperature"] == pytest.approx(0.7) and body["top_p"] == pytest.approx(0.9)


def test_a_prefill_is_a_final_assistant_message_to_continue(server):
    engine = new_engine(openai_config(server))
    result = engine.generate(one_request(role="user", prefill="<prompt>"))
    (body,) = chat_bodies(server)
    assert body["messages"] == [
        *chat_messages("Be brief.", "Name a colour.", "user"),
        {"role": "assistant", "content": "<prompt>"},
    ]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    # vLLM answers only the continuation, and so does the engine (as in process)
    assert result.column("text").to_pylist() == [sample_text(0)]


def test_a_prefill_without_continue_final_message_names_the_row(server):
    engine = new_engine(openai_config(server, continue_final_message=False))
    with pytest.raises(ValueError) as caught:
        engine.generate(one_request(prefill="<prompt>"))
    assert "request 0" in check_message(caught.value)
    assert server.requests == []


def test_role_raw_is_a_text_completion_without_template(server):
    engine = new_engine(openai_config(server))
    result = engine.generate(one_request(role="raw", prefill="<p>", n=2, seed=9))
    (sent,) = server.recorded("/v1/completions")
    assert sent.body["prompt"] == "Be brief.Name a colour.<p>"
    assert "messages" not in sent.body and "prompt_logprobs" not in sent.body
    assert sent.body["n"] == 2 and sent.body["seed"] == 9
    assert result.column("text").to_pylist() == [sample_text(0), sample_text(1)]
    assert chat_bodies(server) == []


def test_result_rows_without_a_tokenizer_share_the_servers_token_total(server):
    engine = new_engine(openai_config(server))
    requests = generate_requests([("A", "x"), ("B", "y")], task_id="t", n=3)
    rows = engine.generate(requests).to_pylist()

    assert [(r["request_id"], r["sample_index"]) for r in rows] == [
        (request, sample) for request in (0, 1) for sample in range(3)
    ]
    assert [r["text"] for r in rows] == [sample_text(i) for i in range(3)] * 2
    assert [r["finish_reason"] for r in rows] == [sample_finish(i) for i in range(3)] * 2
    assert all(r["n_prompt_tokens"] == server.prompt_tokens for r in rows)
    for request in (0, 1):
        counts = [r["n_tokens"] for r in rows if r["request_id"] == request]
        assert sum(counts) == completion_tokens(3) and all(c > 0 for c in counts)


def test_result_rows_with_a_tokenizer_count_each_sample_with_it(server, tokenizer):
    engine = new_engine(scorer_config(server))
    rows = engine.generate(one_request(n=2)).to_pylist()
    texts = [r["text"] for r in rows]
    assert [r["n_tokens"] for r in rows] == [
        len(tokenizer.encode(t, add_special_tokens=False)) for t in texts
    ]
    # the prompt's length is still the server's count (its own rendering)
    assert [r["n_prompt_tokens"] for r in rows] == [server.prompt_tokens] * 2
    assert server.recorded("/tokenize") == []


def test_count_tokens_without_a_tokenizer_asks_the_servers_tokenize(server, tokenizer):
    engine = new_engine(openai_config(server))
    texts = ["Hello, world.", "Ünïcode and <tags>"]
    assert engine.count_tokens(texts) == [
        len(tokenizer.encode(t, add_special_tokens=False)) for t in texts
    ]
    sent = server.recorded("/tokenize")  # at the root, not under /v1
    assert sorted(r.body["prompt"] for r in sent) == sorted(texts)
    assert all(r.body["add_special_tokens"] is False for r in sent)


# ----- retries ------------------------------------------------------------------------------


def test_rate_limits_are_retried_until_an_answer(server):
    engine = new_engine(openai_config(server, retries=3))
    server.fail_next(2, status=429, message="slow down")
    result = engine.generate(one_request())
    assert result.num_rows == 1
    assert len(server.requests) == 3


def test_a_retry_waits_as_long_as_retry_after_says(server):
    engine = new_engine(openai_config(server, retries=3))
    server.fail_next(1, status=429, retry_after="0.4")
    started = time.monotonic()
    assert engine.generate(one_request()).num_rows == 1
    assert len(server.requests) == 2 and time.monotonic() - started >= 0.4


@pytest.mark.parametrize("how", [{"close": True}, {"truncate": True}])
def test_a_dropped_connection_is_retried(server, how):
    engine = new_engine(openai_config(server, retries=3))
    server.fail_next(1, **how)
    assert engine.generate(one_request()).num_rows == 1
    assert len(server.requests) == 2


def test_a_timed_out_request_is_retried(server):
    engine = new_engine(openai_config(server, retries=3, timeout_s=0.2))
    server.fail_next(1, delay_s=0.6)
    started = time.monotonic()
    assert engine.generate(one_request()).num_rows == 1
    assert len(server.requests) == 2 and time.monotonic() - started < 0.6


def test_unavailable_past_the_retries_stops_and_says_resume(server):
    engine = new_engine(openai_config(server, retries=2))
    server.fail_next(10, status=503, message="overloaded")
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as caught:
        engine.generate(one_request())
    message = check_message(caught.value)
    assert f"{server.url}/chat/completions" in message and "--resume" in message
    assert "overloaded" in message
    assert len(server.requests) == 3  # the first try and 2 retries
    assert time.monotonic() - started < 2.0


def test_the_deadline_cuts_retries_short(server, monkeypatch):
    monkeypatch.setattr(openai_http, "FIRST_BACKOFF_S", 0.02)
    deadline = 0.3
    engine = new_engine(openai_config(server, retries=100, retry_deadline_s=deadline))
    server.fail_next(1000, status=503)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as caught:
        engine.generate(one_request())
    elapsed = time.monotonic() - started
    assert "--resume" in check_message(caught.value)
    assert 1 < len(server.requests) < 10 and elapsed < deadline + 0.5


def test_the_deadline_is_kept_with_the_real_backoff(server, monkeypatch):
    monkeypatch.setattr(openai_http, "FIRST_BACKOFF_S", 0.5)
    engine = new_engine(openai_config(server, retries=6, retry_deadline_s=0.2))
    server.fail_next(10, status=503)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable):
        engine.generate(one_request())
    # a 0.5 s wait would overrun 0.2 s: it gives up at once instead of sleeping past it
    assert len(server.requests) == 1 and time.monotonic() - started < 0.4


def test_a_bad_request_is_not_retried(server):
    engine = new_engine(openai_config(server, retries=3))
    server.fail_next(1, status=400, message="This model's maximum context length is 2048")
    with pytest.raises(ServerError) as caught:
        engine.generate(one_request())
    message = check_message(caught.value)
    assert "HTTP 400" in message and "maximum context length is 2048" in message
    assert f"{server.url}/chat/completions" in message
    assert len(server.requests) == 1


# ----- checks before anything starts (open_engines' preflight) --------------------------------


def test_a_working_server_passes_as_scorer_and_rewriter(server):
    with open_engines(PoolConfig(engine=scorer_config(server))) as client:
        server_checks = [(r.method, r.path) for r in server.requests]
        result = client.score(scoring_table())
        assert result.num_rows == scoring_table().num_rows
    # scorer checks (logprob probe, tokenizer round trip), then the prefill probe
    assert ("POST", "/v1/completions") in server_checks and ("POST", "/tokenize") in server_checks
    assert server_checks.count(("GET", "/v1/models")) == 2
    (prefill_probe,) = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert prefill_probe.body["continue_final_message"] is True


def test_wrong_url_is_one_line(server):
    config = openai_config(server, base_url=closed_port_url())
    message = preflight_error(PoolConfig(engine=config))
    assert message.startswith("engine.base_url:") and "is the server running?" in message


def test_wrong_model_lists_what_is_served(server):
    message = preflight_error(PoolConfig(engine=openai_config(server, model="Llama-3-8B")))
    assert "engine.model" in message and repr(SERVED_MODEL) in message
    assert "'Llama-3-8B'" in message


def test_window_larger_than_the_servers_is_refused(server):
    model = {"name": SERVED_MODEL, "max_model_len": 4096}
    message = preflight_error(PoolConfig(engine=openai_config(server, model=model)))
    assert "engine.model.max_model_len" in message and "2048" in message


@pytest.mark.parametrize("switch", ["can_score", "rejects_logprobs"])
def test_a_server_that_cannot_score_is_refused_as_scorer(server, switch):
    setattr(server, switch, switch == "rejects_logprobs")  # omits, or answers 400
    message = preflight_error(PoolConfig(engine=scorer_config(server)))
    assert CANNOT_SCORE in message


def test_a_server_that_cannot_score_is_accepted_as_rewriter(server):
    server.can_score = False
    scorer = PoolConfig(engine=SimulatedConfig())
    rewriter = PoolConfig(engine=openai_config(server))
    with open_engines(scorer, rewriter) as client:
        result = client.generate(one_request(n=2))
    assert result.column("text").to_pylist() == [sample_text(0), sample_text(1)]
    # as rewriter it is never asked to score
    assert all("prompt_logprobs" not in r.body for r in server.recorded("/v1/completions"))


def test_a_scorer_without_tokenizer_is_refused(server):
    message = preflight_error(PoolConfig(engine=openai_config(server)))
    assert message.startswith("engine.tokenizer:") and "rewriter only" in message


def test_a_tokenizer_mismatch_is_refused(server):
    server.wrong_tokenizer = True
    message = preflight_error(PoolConfig(engine=scorer_config(server)))
    assert message.startswith("engine.tokenizer:") and "does not tokenize like" in message


def test_without_tokenize_the_round_trip_is_skipped_with_a_warning(server, caplog):
    server.has_tokenize = False
    with open_engines(PoolConfig(engine=scorer_config(server))):
        pass
    assert "no /tokenize" in caplog.text  # the secret check of the logs is not vacuous


def test_a_refused_prefill_is_refused_unless_configured_off(server):
    server.refuses_prefill = True
    scorer = PoolConfig(engine=SimulatedConfig())
    message = preflight_error(scorer, PoolConfig(engine=openai_config(server)))
    assert message.startswith("engine.continue_final_message:")
    assert "continue_final_message is not supported" in message  # the server's own words

    server.clear()
    no_prefill = PoolConfig(engine=openai_config(server, continue_final_message=False))
    with open_engines(scorer, no_prefill):
        pass
    assert chat_bodies(server) == []  # nothing to probe


def test_a_missing_key_variable_is_named_before_any_request(server, monkeypatch):
    monkeypatch.delenv("PMPO_TEST_UNSET_KEY", raising=False)
    config = openai_config(server, api_key_env="PMPO_TEST_UNSET_KEY")
    message = preflight_error(PoolConfig(engine=config))
    assert message.startswith("engine.api_key_env:") and "PMPO_TEST_UNSET_KEY" in message
    assert server.requests == []


def test_an_unavailable_server_is_said_quickly(server):
    server.fail_next(100, status=503)
    started = time.monotonic()
    message = preflight_error(PoolConfig(engine=openai_config(server, retries=6)))
    assert "is the server running?" in message
    assert len(server.requests) == 2 and time.monotonic() - started < 1.0  # one retry


# ----- the API key --------------------------------------------------------------------------


def test_the_key_is_sent_as_a_bearer_header_on_every_request(server):
    with open_engines(PoolConfig(engine=scorer_config(server))) as client:
        client.score(scoring_table())
        client.generate(one_request(role="raw"))
    assert server.requests
    assert {r.headers.get("Authorization") for r in server.requests} == {f"Bearer {SECRET}"}


def test_the_key_is_in_no_config_dump(server):
    config = scorer_config(server)
    pool = PoolConfig(engine=config)
    engine = new_engine(config)
    dumps = [
        config.model_dump_json(),
        yaml.safe_dump(config.model_dump(mode="json")),
        yaml.safe_dump(pool.model_dump(mode="json")),
        str(config),
        repr(config),
        repr(pool),
        repr(vars(engine.endpoint)),
    ]
    assert all(SECRET not in dump for dump in dumps)
    assert KEY_ENV in config.model_dump_json()  # the variable's name is what is kept


def test_a_wrong_key_is_a_one_line_error_without_the_key(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET[::-1])  # a key the server does not know
    engine = new_engine(openai_config(server))
    with pytest.raises(ServerError) as caught:
        engine.generate(one_request())
    assert "HTTP 401" in check_message(caught.value)
    assert SECRET[::-1] not in str(caught.value)
    message = preflight_error(PoolConfig(engine=openai_config(server)))
    assert "HTTP 401" in message and SECRET[::-1] not in message
