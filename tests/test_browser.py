"""A real browser on the chat page: two servers bridged through Redis, and no markup injection.

Headless Chromium from the distribution (``/usr/bin/chromium``) driven by
Playwright; no browser is ever downloaded. A screenshot of the receiving page
is kept in ``tests/artifacts/chat-browser.png``.
"""

from __future__ import annotations

import shutil
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

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                       "(Debian: apt-get install chromium)"),
    pytest.mark.skipif(check_installed() is not None, reason="redis-server is not installed"),
]


@pytest.fixture
def two_servers() -> Iterator[list[str]]:
    """Two chat servers sharing rooms through a private Redis; yields their page URLs."""
    spec = ServeSpec(pubs=0, subs=0, topics=(),
                     options={"servers": 2, "bridge": "redis", "ws_placement": "spread"})
    with WsTarget().serve(spec) as endpoint:
        yield [u.replace("ws://", "http://").removesuffix("/ws") + "/"
               for u in endpoint.data["urls"]]


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
