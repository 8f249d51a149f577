"""Headless Chromium (Debian package ``chromium``) over the DevTools protocol, on a pipe.

``--remote-debugging-pipe``: Chromium reads NUL-terminated JSON commands on fd 3 and
writes replies and events on fd 4. No port, no websocket library, and the page is a
``file://`` URL: nothing touches the network. Collected: console errors, uncaught
exceptions and browser log errors (a blocked or failed load is one).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Bounds a hung browser, not a measurement: a healthy page loads in well under it.
DEADLINE_S = 90.0


def chromium() -> str:
    """Path of Chromium; skip when absent, or fail when REQUIRE_TEST_TOOLS=1 (CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
            pytest.fail(f"{message}; REQUIRE_TEST_TOOLS=1 requires it")
        pytest.skip(message)
    return path


@dataclass
class PageVisit:
    errors: list[str] = field(default_factory=list)
    result: Any = None  #: the value of the expression evaluated after load
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the pipes become fds 3 and 4 (inheritable)
            high = os.dup(to_browser_r), os.dup(from_browser_w)  # clear of 3 and 4 first
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self._deadline = time.monotonic() + DEADLINE_S

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            left = self._deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        while True:
            message = self._read_message()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read_message()
            self.events.append(message)
            if message.get("method") == method:
                return message

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        finally:
            for fd in (self._to_browser, self._from_browser):
                os.close(fd)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def visit(page: Path, profile: Path, expression: str = "null",
          width: int = 1200, height: int = 900) -> PageVisit:
    """Load ``page`` (a file), evaluate ``expression`` after load, take a full-page
    screenshot; return the errors the page caused on the way."""
    pipe = _Pipe(chromium(), profile)
    visit = PageVisit()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired")
        evaluated = pipe.call("Runtime.evaluate", {"expression": expression,
                                                   "returnByValue": True}, session=session)
        visit.result = evaluated.get("result", {}).get("value")
        shot = pipe.call("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True},
                         session=session)
        visit.screenshot = base64.b64decode(shot["data"])
    finally:
        pipe.close()
    for event in pipe.events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
                "error", "assert"):
            visit.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                         for a in params.get("args", [])))
        elif event.get("method") == "Runtime.exceptionThrown":
            visit.errors.append(params["exceptionDetails"].get("text", "exception"))
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            visit.errors.append(params["entry"].get("text", ""))
    return visit
