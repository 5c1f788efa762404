"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol.

The protocol runs over ``--remote-debugging-pipe`` (NUL-separated JSON on fds 3 and 4), so no
websocket library is needed. The page is loaded with its Content-Security-Policy *bypassed*, so
the checks test the escaping itself, not the CSP that backs it up: an injected ``<script>`` would
run, an injected ``<img onerror>`` would fire, an external stylesheet or font would be fetched.

Asserted: no network request besides the page itself, no console message or exception at error
level, the hostile strings are visible as text, nothing executed, the DOM holds no script element,
no event-handler attribute, no ``javascript:`` link and no external reference. A screenshot of the
top of the page is saved in the test's tmp dir and copied to ``/tmp/recaudit_report.png``, the
full page next to it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .fixtures import HOSTILE, pair_html

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in (os.environ.get("RECAUDIT_CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and os.path.exists(p)), None)
LEAD_SCREENSHOT = Path("/tmp/recaudit_report.png")
WIDTH, TOP_HEIGHT = 1280, 1600


class CDPError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium with a DevTools-protocol session over a pipe (stdlib only)."""

    def __init__(self, binary: str, user_data_dir: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Move the child's ends above fd 9 so that remapping them to 3 and 4 cannot collide.
        to_child_r, from_child_w = (self._high(to_child_r), self._high(from_child_w))

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--no-default-browser-check",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--disable-default-apps",
                 "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe",
                 f"--user-data-dir={user_data_dir}", f"--window-size={WIDTH},{TOP_HEIGHT}",
                 "about:blank"]
        # The pipe protocol wants fd 3 (commands in) and fd 4 (replies out): let sh remap them.
        remap = (f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w} '
                 f"{to_child_r}<&- {from_child_w}>&-")
        shell = shutil.which("bash") or "/bin/sh"  # dash only knows fds 0-9
        self.proc = subprocess.Popen([shell, "-c", remap, binary, *flags],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    @staticmethod
    def _high(fd: int) -> int:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return new

    # -- protocol --------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise CDPError("Chromium closed the pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._read_message(deadline)
            if "method" in ev:
                self.events.append(ev)
                if ev["method"] == method:
                    return ev

    def drain(self, seconds: float) -> None:
        """Collect events for a little while (late requests, console messages)."""
        end = time.monotonic() + seconds
        while True:
            try:
                ev = self._read_message(end)
            except CDPError:
                return
            if "method" in ev:
                self.events.append(ev)

    # -- high level ------------------------------------------------------------------------------
    def open(self, url: str, bypass_csp: bool = True) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": TOP_HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        if bypass_csp:
            self.send("Page.setBypassCSP", {"enabled": True})
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.drain(0.5)

    def evaluate(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise CDPError(f"evaluate failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path, full: bool = False) -> Path:
        if full:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": WIDTH, "height": min(size["height"], 16000),
                    "scale": 1}
        else:
            clip = {"x": 0, "y": 0, "width": WIDTH, "height": TOP_HEIGHT, "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                    "captureBeyondViewport": full})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (run `make browser` or "
                    "`apt-get install -y chromium`); browser tests skipped")
    tmp = tmp_path_factory.mktemp("browser")
    page = tmp / "index.html"
    page.write_text(pair_html(), encoding="utf-8")
    browser = Chromium(CHROMIUM, tmp / "profile")
    try:
        browser.open(page.resolve().as_uri())
        yield browser, page, tmp
    finally:
        browser.close()


DOM_REPORT = r"""(() => {
  const all = Array.from(document.querySelectorAll('*'));
  const handlers = [];
  for (const el of all) for (const a of el.attributes)
    if (a.name.toLowerCase().startsWith('on')) handlers.push(el.tagName + '[' + a.name + ']');
  const external = [];
  const urlAttrs = ['src', 'href', 'xlink:href', 'action', 'poster', 'data'];
  for (const el of all) for (const name of urlAttrs) {
    const v = el.getAttribute(name);
    if (v !== null && !v.startsWith('#')) external.push(el.tagName + ' ' + name + '=' + v);
  }
  return {
    title: document.title,
    scripts: document.querySelectorAll('script').length,
    iframes: document.querySelectorAll('iframe, object, embed, frame').length,
    imgs: document.querySelectorAll('img').length,
    imgOnerror: document.querySelectorAll('img[onerror]').length,
    jsLinks: document.querySelectorAll('a[href^="javascript" i]').length,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))
      .filter(h => !h.startsWith('#')),
    handlers, external,
    text: document.body.innerText,
    svgs: document.querySelectorAll('svg.chart').length,
    width: document.documentElement.scrollWidth,
    overflowing: Array.from(document.querySelectorAll('main table')).filter(t => {
      const wrap = t.closest('.table-wrap'); return !wrap && t.scrollWidth > t.clientWidth + 1;
    }).length,
  };
})()"""


def test_screenshot_and_no_network(loaded):
    browser, page, tmp = loaded
    top = browser.screenshot(tmp / "report_top.png")
    full = browser.screenshot(tmp / "report_full.png", full=True)
    shutil.copyfile(top, LEAD_SCREENSHOT)
    shutil.copyfile(full, LEAD_SCREENSHOT.with_name("recaudit_report_full.png"))
    assert top.stat().st_size > 20_000 and full.stat().st_size > top.stat().st_size
    page_url = page.resolve().as_uri()
    requests = [ev["params"]["request"]["url"] for ev in browser.events
                if ev["method"] == "Network.requestWillBeSent"]
    assert [u for u in requests if u.split("#")[0] != page_url] == []
    assert requests, "the DevTools session saw no request at all: the check is not working"


def test_no_console_errors(loaded):
    browser, _, _ = loaded
    bad = []
    for ev in browser.events:
        m, p = ev["method"], ev["params"]
        if m == "Runtime.exceptionThrown":
            bad.append(("exception", p["exceptionDetails"].get("text")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            bad.append(("console", p.get("args")))
        elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            bad.append(("log", p["entry"].get("text")))
    assert bad == []


def test_hostile_text_is_visible_and_inert(loaded):
    browser, _, _ = loaded
    dom = browser.evaluate(DOM_REPORT)
    assert dom["title"].startswith("recaudit report:") and "pwned" not in dom["title"]
    assert dom["scripts"] == 0 and dom["iframes"] == 0 and dom["imgs"] == 0
    assert dom["imgOnerror"] == 0 and dom["jsLinks"] == 0
    assert dom["handlers"] == [] and dom["external"] == [] and dom["links"] == []
    for s in HOSTILE:
        assert s in dom["text"], f"hostile string not shown as text: {s!r}"
    raw = browser.evaluate(
        "Array.from(document.querySelectorAll('pre')).map(p => p.textContent).join('\\n')")
    assert "<script>document.title='pwned'</script>" in raw  # raw model output, as text


def test_layout_fits_the_window(loaded):
    browser, _, _ = loaded
    dom = browser.evaluate(DOM_REPORT)
    assert dom["svgs"] >= 10
    assert dom["width"] <= WIDTH, "the page scrolls horizontally"
    assert dom["overflowing"] == 0
