"""Open an HTML page in headless Chromium and list everything that went wrong loading it.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages separated by NUL bytes on file descriptors 3 and 4), which needs no port, no
websocket library and no driver binary. While the page loads, every uncaught exception,
console error, error log entry (failed resource loads, blocked content) and failed network
request is collected; after the load event each <img> is decoded (`img.decode()`), which
fails for a missing file and for a file that is not a valid image. The page's visible text,
title and number of <script> elements come back too, so a test can check what a reader sees.

Needs Debian's `chromium` package (`apt-get install -y chromium`), or PMPO_CHROMIUM naming a
Chromium or Chrome binary.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests and CI run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
)
INSTALL_HINT = "install it with `apt-get install -y chromium` (the Makefile's browser step)"
PAGE_STATE = """(async () => {
  const images = Array.from(document.images);
  const broken = await Promise.all(images.map(
    (img) => img.decode().then(() => null, () => img.getAttribute("src"))));
  return {
    url: location.href,
    ready: document.readyState,
    title: document.title,
    scripts: document.scripts.length,
    images: images.length,
    broken: broken.filter((src) => src !== null),
    text: document.body ? document.body.innerText : "",
    height: document.documentElement.scrollHeight,
  };
})()"""


class BrowserMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class PageCheck:
    problems: tuple[str, ...]  # empty when the page loaded cleanly
    title: str
    text: str  # what a reader sees (document.body.innerText)
    images: int
    scripts: int


def find_chromium() -> str:
    for candidate in (
        os.environ.get("PMPO_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrowserMissing(
        f"no Chromium found (PATH, /usr/bin/chromium, $PMPO_CHROMIUM); {INSTALL_HINT}"
    )


class DevTools:
    """One Chromium process and its DevTools pipe; events are kept as they arrive."""

    def __init__(self, chromium: str, profile: Path, log: Path, timeout: float):
        to_browser, self._to_write = os.pipe()
        self._from_read, from_browser = os.pipe()
        # The protocol fixes the descriptors to 3 (commands) and 4 (replies); bash moves our
        # pipe ends there (preexec_fn could too, but not safely under threads, and dash's
        # redirections take single-digit descriptors only).
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        command = ["/bin/bash", "-c", script, chromium, *FLAGS, f"--user-data-dir={profile}"]
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                command + ["about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                pass_fds=(to_browser, from_browser),
            )
        os.close(to_browser)
        os.close(from_browser)
        self.log = log
        self.deadline = time.monotonic() + timeout
        self.events: list[dict] = []
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium: {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, start: int) -> dict:
        """The first `method` event at or after index `start` of the events seen."""
        while True:
            found = next((e for e in self.events[start:] if e.get("method") == method), None)
            if found:
                return found
            self.events.append(self._read())

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self._from_read], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"Chromium did not answer in time; its log: {self._log_tail()}")
            chunk = os.read(self._from_read, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited; its log: {self._log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] or "(empty)"

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass  # the browser is being torn down anyway
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            os.close(self._to_write)
            os.close(self._from_read)


def check_page(html: Path, screenshot: Path | None = None, timeout: float = 60.0) -> PageCheck:
    """Load `html` from disk; raise BrowserMissing when there is no Chromium to load it in."""
    html = Path(html).resolve()
    if not html.is_file():
        raise ValueError(f"{html}: no such HTML file")
    chromium = find_chromium()
    with tempfile.TemporaryDirectory(prefix="pmpo-chromium-") as tmp:
        browser = DevTools(chromium, Path(tmp) / "profile", Path(tmp) / "chromium.log", timeout)
        try:
            return _load(browser, html, screenshot)
        finally:
            browser.close()


def _load(browser: DevTools, html: Path, screenshot: Path | None) -> PageCheck:
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    start = len(browser.events)  # about:blank's own load event may come before ours
    navigation = browser.call("Page.navigate", {"url": html.as_uri()}, session=session)
    problems = (
        [f"navigation failed: {navigation['errorText']}"] if navigation.get("errorText") else []
    )
    page = loaded_page(browser, session, html.as_uri(), start)
    problems += event_problems(browser.events)
    problems += [f"image does not load or decode: {src}" for src in page["broken"]]
    if screenshot is not None:
        take_screenshot(browser, session, page["height"], screenshot)
    return PageCheck(tuple(problems), page["title"], page["text"], page["images"], page["scripts"])


def loaded_page(browser: DevTools, session: str, url: str, start: int) -> dict:
    """PAGE_STATE of `url` once its load event has fired (not about:blank's, seen earlier)."""
    while True:
        browser.wait_for("Page.loadEventFired", start)
        start = len(browser.events)
        state = browser.call(
            "Runtime.evaluate",
            {"expression": PAGE_STATE, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in state:
            raise RuntimeError(f"{url}: inspecting the page failed: {state['exceptionDetails']}")
        page = state["result"]["value"]
        if page["url"] == url and page["ready"] == "complete":
            return page


def event_problems(events: list[dict]) -> list[str]:
    """What the page's loading reported as going wrong, one line per problem."""
    urls, problems = {}, []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed":
            url = urls.get(params["requestId"], params["requestId"])
            problems.append(f"request failed: {url}: {params.get('errorText', '')}")
        elif method == "Network.responseReceived" and params["response"].get("status", 0) >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            thrown = details.get("exception", {}).get("description", details.get("text"))
            problems.append(f"uncaught exception: {thrown}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console {params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            problems.append(
                f"{entry['source']} error: {entry['text']} {entry.get('url', '')}".strip()
            )
    return problems


def take_screenshot(browser: DevTools, session: str, height: int, path: Path) -> None:
    """The whole page at 1280 px wide, for a person to look at."""
    metrics = {
        "width": 1280,
        "height": max(int(height), 200),
        "deviceScaleFactor": 1,
        "mobile": False,
    }
    browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
    shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
    Path(path).write_bytes(base64.b64decode(shot["data"]))
