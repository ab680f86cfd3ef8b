"""Open a local HTML file in headless Chromium through the DevTools protocol (one websocket, no driver).

Returns what a person would see and what the page did: console errors and uncaught exceptions, every
request that was not a file: or data: URL, the value of a JavaScript check, and a full-page screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_or_skip() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    message = ("no headless browser: chromium not found on PATH (./setup.sh installs Debian's chromium when run "
               "as root; or apt-get install chromium)")
    if os.environ.get("CI"):
        pytest.fail(message + " -- CI must have it")
    pytest.skip(message)


@dataclass
class Page:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    check: object = None


def render(path: Path, screenshot: Path, check_js: str = "true", width: int = 1280) -> Page:
    import websocket

    browser = chromium_or_skip()
    profile = Path(tempfile.mkdtemp(prefix="revtune-chromium-"))
    process = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         f"--window-size={width},900", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, process)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        socket = websocket.create_connection(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"],
                                             timeout=60, suppress_origin=True)
        page = Page()
        session = _Session(socket, page)
        for domain in ("Runtime", "Log", "Network", "Page"):
            session.call(f"{domain}.enable")
        session.call("Page.navigate", url=Path(path).resolve().as_uri())
        session.wait_for("Page.loadEventFired")
        page.check = session.call("Runtime.evaluate", expression=check_js, returnByValue=True)["result"].get("value")
        height = session.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
        shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        session.drain(0.3)  # late console messages
        socket.close()
        return page
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, process) -> int:
    deadline = time.time() + 60
    active = profile / "DevToolsActivePort"
    while time.time() < deadline:
        if active.is_file() and active.read_text().strip():
            return int(active.read_text().splitlines()[0])
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with code {process.returncode} before DevTools was up")
        time.sleep(0.1)
    raise RuntimeError("chromium's DevTools did not come up within 60 s")


class _Session:
    def __init__(self, socket, page: Page):
        self.socket, self.page, self.next_id = socket, page, 0
        self.seen: set[str] = set()

    def call(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while event not in self.seen:
            if time.time() > deadline:
                raise RuntimeError(f"no {event} within {timeout} s")
            self._event(json.loads(self.socket.recv()))

    def drain(self, seconds: float) -> None:
        self.socket.settimeout(seconds)
        try:
            while True:
                self._event(json.loads(self.socket.recv()))
        except Exception:  # the timeout ends the drain
            pass

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if not method:
            return
        self.seen.add(method)
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.page.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                          for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.page.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.page.errors.append("log: " + params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:")):
                self.page.requests.append(url)
