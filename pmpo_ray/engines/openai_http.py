"""JSON over HTTP to an OpenAI-compatible server, with retries that give up in time.

A 429, a 5xx, a timeout or a dropped connection is retried with doubling backoff until
`retries` or `retry_deadline_s` runs out; any other answer is the caller's error at once.
Errors are one line naming the URL and the server's own message, never the request's headers:
the API key, read from the environment at each request, appears nowhere else.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
QUICK_DEADLINE_S = 10.0  # checks before a run: a server that is down is said at once
RESUME_HINT = "with the server back, run again with --resume to continue"


class ServerError(RuntimeError):
    """The server answered with an error that a retry would not change."""


class ServerUnavailable(RuntimeError):
    """No answer after the retries the config allows."""


def missing_key(env_name: str | None) -> str | None:
    """Why the API key cannot be read (None: it can, or none is needed)."""
    if env_name and not os.environ.get(env_name):
        return (
            f"engine.api_key_env: the environment variable {env_name} (the API key) is not set "
            f"in this process"
        )
    return None


class Endpoint:
    """Requests to one server: `call(path, body)` answers the decoded JSON."""

    def __init__(self, config, quick: bool = False):
        self.base_url = config.base_url
        self.root_url = config.base_url.removesuffix("/v1")  # vLLM's /tokenize is at the root
        self.key_env = config.api_key_env
        self.timeout_s = min(config.timeout_s, 60.0) if quick else config.timeout_s
        self.retries = min(config.retries, 1) if quick else config.retries
        self.deadline_s = QUICK_DEADLINE_S if quick else config.retry_deadline_s
        self.hint = "is the server running?" if quick else RESUME_HINT

    def call(
        self, path: str, body: dict | None = None, *, method: str = "POST", at_root: bool = False
    ) -> Any:
        url = (self.root_url if at_root else self.base_url) + path
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return self._once(url, body, method)
            except _Retryable as error:
                waited = time.monotonic() - started
                # A server that says when to come back (429/503 Retry-After) is believed.
                backoff = max(min(FIRST_BACKOFF_S * 2**attempt, MAX_BACKOFF_S), error.retry_after)
                if attempt == self.retries or waited + backoff > self.deadline_s:
                    raise ServerUnavailable(
                        f"{url}: no answer after {attempt + 1} tries in {waited:.0f} s "
                        f"({error.reason}); {self.hint}"
                    ) from None
                time.sleep(backoff)
        raise AssertionError("unreachable")

    def _once(self, url: str, body: dict | None, method: str) -> Any:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.key_env) if self.key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message = server_message(error)
            if key:  # a server or proxy that echoes the credentials must not put them here
                message = message.replace(key, "***")
            if error.code in RETRY_STATUS:
                wait = retry_after_s(error.headers.get("Retry-After"))
                raise _Retryable(f"HTTP {error.code}: {message}", wait) from None
            raise ServerError(f"{url}: HTTP {error.code}: {message}") from None
        # Refused, reset, timed out (OSError), cut off mid-answer (HTTPException), garbled.
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as error:
            raise _Retryable(one_line(str(getattr(error, "reason", None) or error))) from None


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retry_after_s(value: str | None) -> float:
    """A Retry-After header's seconds (0 when absent or an HTTP date, which we do not parse)."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def server_message(error: urllib.error.HTTPError) -> str:
    """The server's own error text (OpenAI's {"error": {"message": ...}} or vLLM's
    {"message": ...}), on one line and short."""
    try:
        payload = json.loads(error.read() or b"{}")
    except (OSError, ValueError):
        return error.reason or "no message"
    detail = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(detail, dict):
        detail = detail.get("message") or detail
    return one_line(str(detail))


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
