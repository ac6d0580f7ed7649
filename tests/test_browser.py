"""A real browser on the chat page (two servers bridged through Redis, no markup injection)
and on the HTML report (readable as a page).

Headless Chromium from the distribution (``/usr/bin/chromium``) driven by
Playwright, or by its own ``--screenshot``; no browser is ever downloaded. Screenshots are
kept in ``tests/artifacts/`` (``chat-browser.png``, ``report-browser.png``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from msgbench.api.target import ServeSpec
from msgbench.kit.redis_server import check_installed
from msgbench.targets.ws.target import WsTarget

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_MS = 10_000
XSS = '<img src=x onerror="window.__xss=1">'

SCREENSHOT_TIMEOUT_S = 60
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                       "(Debian: apt-get install chromium)"),
]
needs_redis = pytest.mark.skipif(check_installed() is not None,
                                 reason="redis-server is not installed")


@pytest.fixture
def two_servers() -> Iterator[list[str]]:
    """Two chat servers sharing rooms through a private Redis; yields their page URLs."""
    spec = ServeSpec(pubs=0, subs=0, topics=(),
                     options={"servers": 2, "bridge": "redis", "ws_placement": "spread"})
    with WsTarget().serve(spec) as endpoint:
        yield [u.replace("ws://", "http://").removesuffix("/ws") + "/"
               for u in endpoint.data["urls"]]


@needs_redis
def test_message_typed_on_one_server_shows_on_the_other_as_text(
    two_servers: list[str], tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url_a, url_b = two_servers
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page_a, page_b = browser.new_page(), browser.new_page()
            for page, url in ((page_a, url_a), (page_b, url_b)):
                page.goto(url)
                page.wait_for_selector("body[data-joined='1']", timeout=WAIT_MS)

            page_a.fill("#text", "hello from A")
            page_a.click("#send")
            page_b.locator("#messages li", has_text="hello from A").wait_for(timeout=WAIT_MS)

            page_a.fill("#text", XSS)
            page_a.press("#text", "Enter")
            for page in (page_a, page_b):
                shown = page.locator("#messages li").last
                shown.wait_for(timeout=WAIT_MS)
                sync_api.expect(shown).to_have_text(XSS, timeout=WAIT_MS)
                assert page.locator("#messages img").count() == 0
                assert page.evaluate("window.__xss") is None
            assert page_b.locator("#messages li").all_inner_texts() == ["hello from A", XSS]

            shot = tmp_path / "chat-browser.png"
            page_b.screenshot(path=str(shot))
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / shot.name)
        finally:
            browser.close()


def _report_page(tmp_path: Path) -> Path:
    from test_plot import _capacity
    from test_report import make_result

    from msgbench.analysis.report import Row
    from msgbench.cli.report_cmd import html_page

    runs = [(tmp_path / "a.json", make_result(subs=32, seed=1)),
            (tmp_path / "b.json", make_result(target="zmq", subs=32, lost=500, seed=2,
                                              status="degraded",
                                              reasons=("lost 500 of 6,500 deliveries",)))]
    caps = [(tmp_path / "c.json", _capacity("inproc", 4000.0)),
            (tmp_path / "d.json", _capacity("redis", 900.0))]
    rows = [Row.from_result(p, r) for p, r in runs]
    page = tmp_path / "report.html"
    page.write_text(html_page(runs, rows, "msgbench report", caps), encoding="utf-8")
    return page


def test_the_html_report_reads_as_a_page(tmp_path: Path) -> None:
    page = _report_page(tmp_path)
    shot = tmp_path / "report-browser.png"
    with tempfile.TemporaryDirectory() as profile:  # the command line the project uses
        subprocess.run([str(CHROMIUM), "--headless", *CHROMIUM_ARGS, f"--user-data-dir={profile}",
                        f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri()],
                       capture_output=True, timeout=SCREENSHOT_TIMEOUT_S, check=False)
    assert shot.read_bytes().startswith(b"\x89PNG")
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            view = browser.new_page(viewport={"width": 1000, "height": 900})  # narrower
            view.goto(page.as_uri())
            layout = view.evaluate("""() => {
                const lines = td => { const r = document.createRange();
                                      r.selectNodeContents(td); return r.getClientRects().length; };
                const cells = [...document.querySelectorAll('td, th')];
                return {
                  cells: cells.length,
                  wrapped: cells.filter(c => c.textContent && lines(c) > 1)
                                .map(c => c.textContent),
                  numLeft: [...document.querySelectorAll('td.num')]
                             .filter(c => getComputedStyle(c).textAlign !== 'right').length,
                  degraded: [...document.querySelectorAll('tr.degraded')].map(
                      r => getComputedStyle(r).backgroundColor),
                  ok: getComputedStyle(document.querySelector('tr.ok')).backgroundColor,
                  images: [...document.images].map(i => i.naturalWidth),
                };
            }""")
        finally:
            browser.close()
    assert layout["cells"] > 50
    assert layout["wrapped"] == [], "cells wrap over two lines"
    assert layout["numLeft"] == 0
    assert layout["degraded"] and all(c != layout["ok"] for c in layout["degraded"])
    assert len(layout["images"]) == 2 and all(w > 500 for w in layout["images"])
