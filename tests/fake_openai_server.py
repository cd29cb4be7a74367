"""A tiny programmable OpenAI-compatible server, shaped like vLLM 0.32's, for protocol tests.

It answers at once and deterministically, records every request, and can be told to fail:
the tests check what the openai backend sends and how it reads answers, retries and gives up,
without a model. Shapes follow vLLM 0.32's server (checked against a real one): /v1/models,
/v1/completions with `prompt_logprobs` (a list whose first entry is null, then one mapping
str(token id) -> {logprob, rank, decoded_token} per prompt token), /v1/chat/completions with
`continue_final_message`, and /tokenize at the root.

Use it as a context manager: `with FakeOpenAiServer(...) as server: server.url`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

SERVED_MODEL = "SmolLM2-135M-Instruct"


def token_logprob(token_id: int) -> float:
    """The fake model's logprob of a prompt token: tests compute the same to check sums."""
    return -(token_id % 7) / 10


def token_rank(token_id: int) -> int:
    """Even tokens are the greedy choice (rank 1); odd ones rank lower."""
    return 1 if token_id % 2 == 0 else 2 + token_id % 5


def sample_text(index: int) -> str:
    """Sample `index` of a generation: texts of different lengths, so a token total shared out
    by length is uneven."""
    return " ".join(["word"] * (index + 1)) + f" #{index}"


def sample_finish(index: int) -> str:
    return "stop" if index % 2 == 0 else "length"


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class Failure:
    """What to answer instead of the real thing: an HTTP status, a connection closed before
    any answer, an answer cut off in the middle of its body, or the real answer `delay_s` late
    (past the client's timeout)."""

    status: int | None = None
    message: str = "injected failure"
    close: bool = False
    truncate: bool = False
    delay_s: float = 0.0
    retry_after: str | None = None  # a Retry-After header on the error


@dataclass
class FakeOpenAiServer:
    """Switches (set them any time; handler threads read them per request):
    `can_score` False omits prompt_logprobs (a server that cannot score), `rejects_logprobs`
    answers them with 400 instead; `refuses_prefill` answers continue_final_message with 400;
    `wrong_tokenizer` makes /tokenize answer other ids; `has_tokenize` False answers it 404;
    `required_key` set makes every request without that Bearer key a 401."""

    model: str = SERVED_MODEL
    max_model_len: int = 2048
    tokenize: Callable[[str], list[int]] | None = None  # default: one id per word
    can_score: bool = True
    rejects_logprobs: bool = False
    refuses_prefill: bool = False
    wrong_tokenizer: bool = False
    has_tokenize: bool = True
    required_key: str | None = None
    prompt_tokens: int = 42  # what chat and text completions report as usage.prompt_tokens
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self):
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None

    # ----- programming it --------------------------------------------------------------

    def fail_next(self, count: int, status: int | None = None, **how) -> None:
        """Answer the next `count` requests (any path) with `status`, or as `how` says."""
        with self._lock:
            self._failures.extend(Failure(status, **how) for _ in range(count))

    def recorded(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def url(self) -> str:
        """The API root a config names (…/v1)."""
        assert self._http is not None, "start the server first (with FakeOpenAiServer(...))"
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    # ----- lifetime --------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAiServer:
        self._http = _Server(("127.0.0.1", 0), _handler_for(self))
        # A short poll interval: shutdown() waits up to one interval.
        thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._http is not None
        self._http.shutdown()
        self._http.server_close()

    # ----- answers ---------------------------------------------------------------------

    def _record(self, recorded: Recorded) -> Failure | None:
        with self._lock:
            self.requests.append(recorded)
            return self._failures.popleft() if self._failures else None

    def answer(self, method: str, path: str, body: Any, headers: dict) -> tuple[int, Any]:
        """(status, JSON payload) for one request that is not an injected failure."""
        if self.required_key and headers.get("Authorization") != f"Bearer {self.required_key}":
            # OpenAI's wording and shape; it never echoes the key it was given
            return 401, openai_error("Incorrect API key provided.", "invalid_request_error", 401)
        routes = {
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/tokenize"): self._tokenize,
        }
        route = routes.get((method, path))
        if route is None or (path == "/tokenize" and not self.has_tokenize):
            return 404, {"detail": "Not Found"}
        return route(body)

    def _models(self, _body) -> tuple[int, Any]:
        entry = {
            "id": self.model,
            "object": "model",
            "created": 0,
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": self.max_model_len,
        }
        return 200, {"object": "list", "data": [entry]}

    def _completions(self, body: dict) -> tuple[int, Any]:
        prompt = body["prompt"]
        if isinstance(prompt, list):  # token ids: a scoring request
            return self._scored_prompt(body, prompt)
        n = body.get("n", 1)
        choices = [
            {"index": i, "text": sample_text(i), "finish_reason": sample_finish(i)}
            for i in range(n)
        ]
        return 200, completion_payload("text_completion", choices, self.prompt_tokens, n)

    def _scored_prompt(self, body: dict, token_ids: list[int]) -> tuple[int, Any]:
        choice: dict[str, Any] = {"index": 0, "text": "_", "finish_reason": "length"}
        if body.get("prompt_logprobs") is not None:
            if self.rejects_logprobs:
                return 400, openai_error("prompt_logprobs is not supported", "BadRequestError")
            if self.can_score:
                choice["prompt_logprobs"] = [None] + [prompt_entry(t) for t in token_ids[1:]]
        return 200, completion_payload("text_completion", [choice], len(token_ids), 1)

    def _chat(self, body: dict) -> tuple[int, Any]:
        if body.get("continue_final_message") and self.refuses_prefill:
            message = "continue_final_message is not supported by this server"
            return 400, openai_error(message, "BadRequestError")
        n = body.get("n", 1)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": sample_text(i)},
                "finish_reason": sample_finish(i),
            }
            for i in range(n)
        ]
        return 200, completion_payload("chat.completion", choices, self.prompt_tokens, n)

    def _tokenize(self, body: dict) -> tuple[int, Any]:
        text = body["prompt"]
        tokens = self.tokenize(text) if self.tokenize else [len(w) for w in text.split()]
        if self.wrong_tokenizer:
            tokens = [t + 1 for t in tokens] + [0]
        return 200, {
            "count": len(tokens),
            "max_model_len": self.max_model_len,
            "tokens": tokens,
            "token_strs": None,
        }


def prompt_entry(token_id: int) -> dict:
    """One prompt token's entry: the token itself and, when it was not the greedy choice, the
    top token too (vLLM lists the actual token plus the top `prompt_logprobs` ones)."""
    rank = token_rank(token_id)
    scored = {"logprob": token_logprob(token_id), "rank": rank, "decoded_token": "?"}
    entry = {str(token_id): scored}
    if rank != 1:
        entry[str(token_id + 1)] = {"logprob": -0.01, "rank": 1, "decoded_token": "?"}
    return entry


def completion_tokens(n: int) -> int:
    """usage.completion_tokens of an answer with `n` samples (any deterministic total)."""
    return sum(len(sample_text(i).split()) + 1 for i in range(n))


def completion_payload(kind: str, choices: list, prompt_tokens: int, n: int) -> dict:
    generated = completion_tokens(n)
    return {
        "id": "cmpl-fake",
        "object": kind,
        "created": 0,
        "model": SERVED_MODEL,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated,
        },
    }


def openai_error(message: str, kind: str, code: int = 400) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default listen backlog of 5 drops the connections of 8 requests in flight at once,
    # and each dropped one waits a second for its retransmitted SYN.
    request_queue_size = 64

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and left: writing to it fails, as intended


def _handler_for(server: FakeOpenAiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = dict(self.headers.items())
            failure = server._record(Recorded(method, self.path, body, headers))
            if failure is not None and failure.delay_s:
                time.sleep(failure.delay_s)
                failure = None
            if failure is None:
                self._send(*server.answer(method, self.path, body, headers))
            elif failure.close:
                self.close_connection = True  # no status line at all: a dropped connection
            elif failure.truncate:
                self._send_cut_off()
            else:
                kind = "RateLimitError" if failure.status == 429 else "ServiceUnavailable"
                error = openai_error(failure.message, kind, failure.status)
                self._send(failure.status, error, retry_after=failure.retry_after)

        def _send(self, status: int, payload: Any, retry_after: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_cut_off(self) -> None:
            """Headers promise a body that stops half way: the connection dropped mid-answer."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    return Handler
