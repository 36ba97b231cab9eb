"""The HTML report in a real browser: headless Chromium, driven over the DevTools protocol.

It renders a report built from a real recording of the built-in workload and its real replay,
then checks what a user would see: every figure decoded (non-zero natural size), the tables there,
no console error or exception, and no request other than the file itself (the report must be
self-contained). A full-page screenshot is kept in the test's tmp dir for a human to look at.

Without Chromium the test skips, except under CI=true, where it fails: `scripts/install-deps`
installs it there.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collector_helpers import calm, record_workload

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--hide-scrollbars", "--remote-debugging-port=0")
SCENARIOS = ("64MiB@256Mbit", "128MiB@512Mbit")
ALGORITHMS = 5
ANALYSIS_FIGURES = 9
REPLAY_FIGURES = 3  # cost bars, bandwidth over time, cost against fixed bandwidth (--sweep)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (scripts/install-deps installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium, or run scripts/install-deps)")


class DevTools:
    """A minimal Chrome DevTools Protocol client on one page target (flat session mode)."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        import websocket

        self._log = open(log, "wb")
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      "--window-size=1280,900", "about:blank"],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 120  # only against a hang: a busy machine starts chromium slowly
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"chromium did not start its DevTools endpoint; log:\n{log.read_text()}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=120, suppress_origin=True)
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: bool = False, **params) -> dict:
        """Sends a command and returns its result; events that arrive meanwhile are kept."""
        msg_id = next(self._ids)
        message = {"id": msg_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, **params) -> dict:
        return self.call(method, session=True, **params)

    def wait_event(self, method: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method} within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                try:
                    self.call("Browser.close")
                except Exception:  # the browser may go away before it answers
                    pass
                self.ws.close()
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


DOM_PROBE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
      width: i.naturalWidth, height: i.naturalHeight, shown: i.getBoundingClientRect().width,
      inline: i.src.startsWith('data:image/png;base64,')})),
  tables: Array.from(document.querySelectorAll('table')).map(t => ({
      caption: t.caption ? t.caption.textContent : '', rows: t.tBodies[0].rows.length})),
  best: document.querySelectorAll('#replay tr.best').length,
  external: Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') ||
      e.getAttribute('href')).filter(u => !u.startsWith('data:') && !u.startsWith('#')),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  title: document.title, height: document.documentElement.scrollHeight,
  sections: Array.from(document.querySelectorAll('section.block h2')).map(h => h.textContent),
  overflowing: Array.from(document.querySelectorAll('section.block')).filter(
      s => s.scrollWidth > s.clientWidth + 1).map(s => s.id),
})"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report of a real recording of the workload and its real replay."""
    tmp = tmp_path_factory.mktemp("report")
    trace, _, _ = record_workload(tmp, profile="service", pages=2048, samples=40)
    replay = tmp / "replay"
    calm("replay", str(trace), *(a for s in SCENARIOS for a in ("-s", s)), "--sweep", "4", "-q",
         "--no-plots", "-o", str(replay), check=True)
    out = tmp / "report.html"
    calm("report", str(trace), "--replay", str(replay / "results.json"), "-o", str(out), "-q", check=True)
    return out


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    browser = DevTools(_chromium(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.page(f"{domain}.enable")
        browser.page("Page.navigate", url=report.as_uri())
        browser.wait_event("Page.loadEventFired")
        dom = json.loads(browser.page("Runtime.evaluate", expression=DOM_PROBE,
                                      returnByValue=True)["result"]["value"])
        width, height = 1280, int(dom["height"])
        browser.page("Emulation.setDeviceMetricsOverride", width=width, height=height,
                     deviceScaleFactor=1, mobile=False)
        shot = browser.page("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        events = list(browser.events)
    finally:
        browser.close()

    import base64

    import matplotlib.image

    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (height, width), pixels.shape
    assert height > 3000, f"the page is only {height} px tall"
    assert pixels[..., :3].std() > 0.05, "the screenshot is (nearly) one colour"

    images = dom["images"]
    assert len(images) == ANALYSIS_FIGURES + REPLAY_FIGURES, images
    for image in images:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
        assert image["inline"] and image["shown"] > 300, image
    captions = [t["caption"] for t in dom["tables"]]
    replay_table = next(t for t in dom["tables"] if t["caption"].startswith("Simulated live migrations"))
    assert replay_table["rows"] == len(SCENARIOS) * ALGORITHMS, captions
    assert dom["best"] >= len(SCENARIOS)
    assert any(c.startswith("Processes followed") for c in captions)
    assert all(t["rows"] > 0 for t in dom["tables"]), dom["tables"]
    assert dom["sections"] == ["Overview", "Recording", "How often pages are dirtied",
                               "Where memory is dirtied", "Migration replay", "Units"]
    assert dom["overflowing"] == [], f"content wider than its section: {dom['overflowing']}"
    assert dom["external"] == [] and dom["resources"] == [], (dom["external"], dom["resources"])

    errors = [e for e in events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == [], errors
    requested = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert all(u == report.as_uri() or u.startswith("data:") for u in requested), requested
