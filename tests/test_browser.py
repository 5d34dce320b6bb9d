"""The browser client in a real browser: headless Chromium (Debian's package) driven by Playwright.

The page is used as a person would: open /, press Start, watch, type a prompt. Chromium normally hides host
ICE candidates behind mDNS names and leaves out loopback; the flags below let it reach aiortc on this machine.
The page's Content-Security-Policy stays on, so page state is read with evaluate() polls, not with
wait_for_function (which needs eval).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.test_server import OTHER_PROMPT, TOKEN, ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (CI installs it: apt-get install chromium)")
FLAGS = ["--disable-features=WebRtcHideLocalIpsWithMdns", "--allow-loopback-in-peer-connection",
         "--use-fake-ui-for-media-stream", "--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
WAIT_S = 120


def poll(page, expression: str, timeout: float = WAIT_S):
    """The value of `expression` in the page once it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.25)


def snapshot(page) -> list[int]:
    """The video's current picture, read back through a canvas (RGBA bytes)."""
    return page.evaluate("""() => {
        const v = document.getElementById('video');
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0);
        return Array.from(g.getImageData(0, 0, c.width, c.height).data);
    }""")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.test_worldmodel import tiny_world

    world = tiny_world(tmp_path_factory.mktemp("world") / "tiny")
    srv = ServerProcess("--token", TOKEN, "--max-sessions", "2", "--world", str(world))
    yield srv
    srv.stop()


def test_browser_streams_and_follows_a_typed_prompt(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(f"{server.http}/?token={TOKEN}")
            page.click("#start")

            poll(page, "window.sanaStats.framesShown >= 16")
            assert page.evaluate("document.getElementById('video').videoWidth") == 256
            assert page.evaluate("window.sanaStats.firstFrameMs") > 0
            played = page.evaluate("document.getElementById('video').currentTime")
            poll(page, f"document.getElementById('video').currentTime > {played}")
            before = snapshot(page)

            page.fill("#prompt", OTHER_PROMPT)
            page.press("#prompt", "Enter")
            # The page saw a frame made under the new prompt (its RTP slot is at or past the "applied" one).
            latency_ms = poll(page, "window.sanaStats.editMs[0]")
            assert latency_ms > 0
            poll(page, f"window.sanaStats.server.prompt === {OTHER_PROMPT!r}", timeout=10)
            assert snapshot(page) != before

            shot = tmp_path / "browser.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 1000
            assert page.evaluate("window.sanaStats.errors") == []
            assert not errors

            # World mode: held keys move the world; the page measures action-to-photon.
            page.click("#stop")
            page.select_option("#mode", "world")
            page.click("#start")
            poll(page, "window.sanaStats.framesShown >= 8")
            assert page.evaluate("document.getElementById('video').videoWidth") == 32
            page.keyboard.down("w")
            assert poll(page, "window.sanaStats.actionMs[0]") > 0
            poll(page, "window.sanaStats.server.keys === 'w'", timeout=30)  # the server's steps hold it
            page.keyboard.up("w")
            assert page.evaluate("window.sanaStats.errors") == []
        finally:
            browser.close()
