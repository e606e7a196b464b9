"""The browser demo: static serving (always) and a real headless Chromium session (when available)."""

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
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
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def demo_app(settings: Settings) -> FastAPI:
    """The service app: the demo router is part of it."""
    return create_app(settings)


def test_index_and_assets_are_served(tmp_path: Path) -> None:
    client = TestClient(demo_app(Settings(data_dir=tmp_path)))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert (
        '<script src="/static/app.js"' in page.text
        and "default-src 'self'" in page.headers["content-security-policy"]
    )
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
    # The jobs table names the operator the job ran with and links its result.
    row = page.locator("#jobs tbody tr[data-state='succeeded']").first
    assert row.locator("td.operator").inner_text().startswith("bt2408")
    assert row.locator("a.result-link").get_attribute("href") == href

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


# -- defaults, jobs table, before/after preview --------------------------------------------------------


def test_defaults_endpoint_reports_the_server_defaults(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, default_operator="bt2408", default_peak_nits=600.0, api_keys=("k",)
    )
    with TestClient(demo_app(settings)) as client:
        response = client.get("/demo/defaults")  # open, like the page that needs it
    assert response.status_code == 200
    assert response.json() == {"operator": "bt2408", "mode": "fast", "peak_nits": 600.0, "auth": True}


def _still(path: Path) -> Path:
    """A 128 x 72 sRGB test card: grey ramp on top, saturated and white patches below, a dark corner."""
    from PIL import Image

    img = np.zeros((72, 128, 3), np.uint8)
    img[:36] = np.linspace(0, 255, 128, dtype=np.float32)[None, :, None].astype(np.uint8)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128)]):
        img[36:, i * 24 : (i + 1) * 24] = colour
    Image.fromarray(img).save(path)
    return path


def _reference_light(url: str, image: Path, operator: str, peak: float) -> tuple[float, float]:
    """MaxCLL, MaxFALL of the server's PQ PNG for ``image``, recomputed with NumPy (not the page's code)."""
    import zlib

    import httpx

    from service.colour.pq import eotf_st2084

    png = httpx.post(
        f"{url}/v1/images",
        params={"format": "png", "operator": operator, "peak_nits": peak},
        content=image.read_bytes(),
        headers={"Content-Type": "image/png"},
        timeout=60,
    ).content
    at, idat, size = 8, b"", (0, 0)
    while at < len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            size = (int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big"))
        elif kind == b"IDAT":
            idat += data
        at += 12 + length
    width, height = size
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * 6)
    assert not rows[:, 0].any(), "the reference decoder handles filter type 0 only"
    codes = rows[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(np.float64)
    light = eotf_st2084(codes / 65535.0).max(axis=-1)
    return float(light.max()), float(light.mean())


def _pixels(page: Any, selector: str, path: Path) -> np.ndarray:
    """The element as the screen shows it (a screenshot), as H x W x 3 uint8."""
    from PIL import Image

    page.locator(selector).screenshot(path=str(path))
    with Image.open(path) as shot:
        return np.asarray(shot.convert("RGB"))


def _run_preview(page: Any, operator: str) -> dict[str, Any]:
    renders = page.evaluate("window.itmDemo.preview.renders")
    page.select_option("#operator", operator)
    page.click("#preview-button")
    page.wait_for_function(
        f"window.itmDemo.preview.renders > {renders} || window.itmDemo.preview.error !== null", timeout=60_000
    )
    state: dict[str, Any] = page.evaluate("window.itmDemo.preview")
    assert state["error"] is None, state
    return state


def test_demo_preselects_the_server_defaults(browser: Any, live_factory: Any) -> None:
    import httpx

    server = live_factory(default_operator="bt2408", default_peak_nits=600.0)
    server.wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)
    page = browser.new_page(bypass_csp=True)
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#operator option').length >= 2")
    assert page.eval_on_selector("#operator", "el => el.value") == "bt2408"
    assert float(page.eval_on_selector("#peak", "el => el.value")) == 600.0
    assert page.eval_on_selector("#mode", "el => el.disabled")  # bt2408 takes no mode


def test_demo_before_after_preview_in_chromium(browser: Any, live_demo: Any, tmp_path: Path) -> None:
    from tests.service.conftest import make_clip

    card = _still(tmp_path / "card.png")
    page = browser.new_page(viewport={"width": 1280, "height": 1400}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_demo.url + "/")
    page.wait_for_function("document.querySelectorAll('#operator option').length >= 2")
    page.fill("#peak", "1000")
    page.set_input_files("#preview-file", str(card))

    # bt2408 puts SDR white at 203 cd/m² without expansion: shown with 203 as white, the HDR frame must look
    # like the SDR frame. That holds only if the page decodes the PQ PNG, the EOTF and the gamut right.
    state = _run_preview(page, "bt2408")
    assert (state["width"], state["height"], state["white"]) == (128, 72, 203)
    max_cll, max_fall = _reference_light(live_demo.url, card, "bt2408", 1000.0)
    assert state["maxCLL"] == pytest.approx(max_cll, rel=2e-3)
    assert state["maxCLL"] == pytest.approx(203, rel=0.01)
    assert state["maxFALL"] == pytest.approx(max_fall, rel=2e-3)
    sdr = _pixels(page, "#preview-sdr", tmp_path / "sdr.png").astype(np.float32)
    hdr = _pixels(page, "#preview-hdr", tmp_path / "hdr_2408.png").astype(np.float32)
    assert sdr.shape == hdr.shape and sdr.std() > 40, "the SDR pane is blank"
    difference = float(np.abs(sdr - hdr).mean())
    assert difference < 2.0, f"bt2408 at 203 differs from the SDR input by {difference:.1f} codes"

    # bt2446a expands SDR white to the 1000 cd/m² peak: 1000 as white shows it unclipped, 203 as white is
    # brighter and clips, and the slider at its top end (10 000) is darker still.
    state = _run_preview(page, "bt2446a")
    max_cll, max_fall = _reference_light(live_demo.url, card, "bt2446a", 1000.0)
    assert state["maxCLL"] == pytest.approx(max_cll, rel=2e-3) and 900 < state["maxCLL"] <= 1000.5
    assert state["maxFALL"] == pytest.approx(max_fall, rel=2e-3)
    at_203 = _pixels(page, "#preview-hdr", tmp_path / "hdr_203.png").astype(np.float32)
    page.click("#white-1000")
    assert page.evaluate("window.itmDemo.preview.white") == 1000
    at_1000 = _pixels(page, "#preview-hdr", tmp_path / "hdr_1000.png").astype(np.float32)
    page.fill("#exposure", "1000")  # the slider's top: 10 000 cd/m² as white
    assert page.evaluate("window.itmDemo.preview.white") == pytest.approx(10000)
    at_10000 = _pixels(page, "#preview-hdr", tmp_path / "hdr_10000.png").astype(np.float32)
    means = [float(x.mean()) for x in (at_203, at_1000, at_10000)]
    assert means[0] > means[1] + 20 > means[2] + 20, means
    assert at_1000.std() > 30, "the HDR pane at 1000 cd/m² white is blank"
    clipped = [float((x.max(axis=-1) >= 250).mean()) for x in (at_203, at_1000)]
    assert clipped[0] > clipped[1] + 0.1, clipped
    page.click("#white-1000")

    # The histogram marks MaxCLL (red) right of MaxFALL (orange), on a log axis whose 1000 tick they bracket.
    histogram = _pixels(page, "#preview-histogram", tmp_path / "histogram.png").astype(np.int16)
    red, green, blue = histogram[..., 0], histogram[..., 1], histogram[..., 2]
    is_red = (red > 200) & (green < 90) & (blue < 90)
    is_orange = (red > 200) & (green > 120) & (green < 190) & (blue < 60)
    cll_columns = np.flatnonzero(is_red.sum(axis=0) > 20)
    fall_columns = np.flatnonzero(is_orange.sum(axis=0) > 20)
    assert cll_columns.size and fall_columns.size, "MaxCLL/MaxFALL markers not drawn"
    assert cll_columns.min() > fall_columns.max(), (cll_columns, fall_columns)
    bars = ((np.abs(red - 0x99) < 25) & (np.abs(blue - 0xBB) < 25)).sum()
    assert bars > 500, "no histogram bars"

    # A frame grabbed from a video in the browser goes the same way.
    webm = make_clip(tmp_path / "clip.webm", frames=25, width=96, height=64, codec="libvpx")
    page.set_input_files("#preview-file", str(webm))
    page.fill("#preview-time", "0.5")
    state = _run_preview(page, "bt2446a")
    assert (state["width"], state["height"]) == (96, 64)
    assert _pixels(page, "#preview-hdr", tmp_path / "hdr_video.png").std() > 30
    page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
    assert not errors, errors
    if path := __import__("os").environ.get("ITM_PREVIEW_SCREENSHOT"):
        shutil.copy(tmp_path / "preview.png", path)


def test_demo_with_an_api_key_in_chromium(browser: Any, live_factory: Any, tmp_path: Path) -> None:
    import httpx

    server = live_factory(api_keys=("demo-key",))
    server.wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)
    page = browser.new_page(viewport={"width": 1280, "height": 1400}, bypass_csp=True)
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('convert-status').textContent.includes('API key')")
    page.fill("#api-key", "demo-key")
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.querySelectorAll('#operator option').length >= 2")
    assert page.eval_on_selector("#operator", "el => el.value") == "bt2446a"  # this server's default
    page.set_input_files("#preview-file", str(_still(tmp_path / "card.png")))
    state = _run_preview(page, "bt2446a")
    assert state["maxCLL"] > 900
    assert _pixels(page, "#preview-hdr", tmp_path / "hdr.png").std() > 30
