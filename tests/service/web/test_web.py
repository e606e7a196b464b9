"""The browser demo: static serving (always) and a real headless Chromium session (when available)."""

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from service.app import create_app
from service.config import Settings
from service.web import routes as web

with warnings.catch_warnings():
    # Starlette warns at import that its TestClient will move to httpx2; not ours to fix.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CHROMIUM = "/usr/bin/chromium"
# As the machine's probe starts it: no sandbox as root, no GPU, and no background traffic to a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def demo_app(settings: Settings) -> FastAPI:
    """The service app: the demo router is part of it."""
    return create_app(settings)


def test_index_and_assets_are_served(tmp_path: Path) -> None:
    client = TestClient(demo_app(Settings(data_dir=tmp_path)))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and "default-src 'self'" in page.headers[
        "content-security-policy"
    ]
    script = client.get("/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert '"credit", n: 1' in script.text and "/v1/stream" in script.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    for bad in ("/static/missing.js", "/static/..%2Froutes.py", "/static/index.html"):
        response = client.get(bad)
        assert response.status_code == 404, bad
        assert response.headers["content-type"] == "application/problem+json"


def test_missing_demo_files_do_not_break_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "STATIC_DIR", tmp_path / "absent")
    web._assets.cache_clear()
    try:
        client = TestClient(demo_app(Settings(data_dir=tmp_path)))
        response = client.get("/")
        assert response.status_code == 404 and "not installed" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200
    finally:
        web._assets.cache_clear()


# -- headless Chromium --------------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def live_demo(live: Any) -> Any:
    """The shared loopback uvicorn server (tests/service/conftest.py), ready."""
    return live


def test_demo_converts_and_streams_in_chromium(browser: Any, live_demo: Any, tmp_path: Path) -> None:
    from tests.service.conftest import make_clip

    clip = make_clip(tmp_path / "clip.mp4", frames=12, width=64, height=48)
    webm = make_clip(tmp_path / "live.webm", frames=60, width=64, height=36, codec="libvpx")
    # bypass_csp: Playwright evaluates its wait predicates as strings, which the page's CSP forbids.
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_demo.url + "/")
    page.wait_for_function("document.querySelectorAll('#operator option').length >= 2")

    # Upload -> progress -> download link.
    page.select_option("#operator", "bt2408")
    page.set_input_files("#file", str(clip))
    page.click("#convert-button")
    page.wait_for_selector("#download:not([hidden])", timeout=120_000)
    assert page.eval_on_selector("#upload-progress", "el => el.value") == 1
    assert page.eval_on_selector("#job-progress", "el => el.value") == 1
    href = page.get_attribute("#download", "href")
    assert href and href.endswith("/result")
    import httpx

    assert httpx.get(live_demo.url + href).content[4:8] == b"ftyp"
    page.wait_for_selector("#jobs tbody tr[data-state='succeeded']")

    # Live panel: the <video> element's frames go through the WebSocket and come back as PQ codes.
    page.set_input_files("#live-file", str(webm))
    page.select_option("#live-width", "160")
    page.click("#live-start")
    page.wait_for_function("window.itmDemo.live.results >= 10", timeout=60_000)
    page.wait_for_function("window.itmDemo.live.latencyMs !== null", timeout=10_000)
    lit = page.evaluate(
        """() => {
            const c = document.getElementById('live-output');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
            return lit / (c.width * c.height);
        }"""
    )
    assert lit > 0.5, f"only {lit:.0%} of the output canvas is lit"
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.click("#live-stop")
    page.wait_for_function("window.itmDemo.live.closed !== null", timeout=30_000)
    live = page.evaluate("window.itmDemo.live")
    assert live["closed"]["code"] == 1000, live
    assert live["sent"] == live["results"] + live["drops"], live
    assert not errors, errors
    if path := __import__("os").environ.get("ITM_DEMO_SCREENSHOT"):
        shutil.copy(shot, path)
