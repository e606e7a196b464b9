"""One real server per module for the bad-input corpus, and the checks every case ends with.

The server is the service tests' uvicorn-in-a-thread (tests/service/conftest.py) on a loopback ephemeral
port, with limits lowered so that "too long" and "too large" inputs stay tiny: a 2 MiB upload limit, 4 s of
video at most, 1280x720 frames at most, and the cheap ``bt2408`` operator by default.
"""

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` without `python -m` does not put the repo root on sys.path
    sys.path.insert(0, str(ROOT))

from tests.service.conftest import LiveServer, ffprobe, start_server  # noqa: E402

UPLOAD_LIMIT = 2 << 20
MAX_DURATION_S = 4.0
MAX_WIDTH, MAX_HEIGHT = 1280, 720
MAX_CREDITS = 4
FINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
JOB_TIMEOUT_S = 120.0
"""Safety net for polling only (a stuck job fails the test instead of hanging it); not a speed claim."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A ready server with low limits, shared by every case of one module."""
    live = start_server(
        tmp_path_factory.mktemp("adversarial"),
        default_operator="bt2408",
        upload_limit_bytes=UPLOAD_LIMIT,
        max_duration_s=MAX_DURATION_S,
        max_width=MAX_WIDTH,
        max_height=MAX_HEIGHT,
        stream_max_credits=MAX_CREDITS,
        warmup_size=(16, 64),
    )
    live.wait_for(lambda: httpx.get(f"{live.url}/readyz").status_code == 200, timeout=120)
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client bound to the module's server."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def problem(response: httpx.Response, status: int, fragment: str) -> None:
    """Assert an RFC 9457 answer with ``status`` whose ``detail`` mentions ``fragment``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == status and body["title"], body
    assert fragment.lower() in body["detail"].lower(), (fragment, body["detail"])


def wait_terminal(http: httpx.Client, job_id: str) -> dict[str, Any]:
    """Poll a job until it leaves queued/running; fail (never hang) if it does not."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in FINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job['state']}"
        time.sleep(0.05)


def leftovers(live: LiveServer) -> list[str]:
    """Files that should not exist: anything in the upload tmp dir, and in job folders anything but the
    result of a succeeded job (failed and cancelled jobs keep nothing; temporaries are dot files)."""
    data = live.settings.data_dir
    found = [str(p.relative_to(data)) for p in (data / "tmp").rglob("*")] if (data / "tmp").exists() else []
    folders = list((data / "jobs").iterdir()) if (data / "jobs").exists() else []
    with httpx.Client(base_url=live.url, timeout=30) as http:
        for folder in folders:
            state = http.get(f"/v1/jobs/{folder.name}").json().get("state")
            allowed = {"output.mp4", "output.mkv", "output.mov"} if state == "succeeded" else set()
            found += [str(p.relative_to(data)) for p in folder.iterdir() if p.name not in allowed]
    return found


def assert_healthy_and_clean(live: LiveServer) -> None:
    """The server answers /healthz, no job is queued or running, and no temp file is left behind."""
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        jobs = http.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert [j["id"] for j in jobs if j["state"] in ACTIVE] == []
    assert leftovers(live) == []


def assert_hdr10(path: Path) -> None:
    """``path`` is an HDR10 video: HEVC Main 10, PQ, BT.2020 primaries and matrix."""
    stream = ffprobe(path, "-show_streams", "-select_streams", "v:0")["streams"][0]
    assert stream["codec_name"] == "hevc"
    assert stream["pix_fmt"] == "yuv420p10le"
    assert stream["color_transfer"] == "smpte2084"
    assert stream["color_primaries"] == "bt2020"
    assert stream["color_space"] == "bt2020nc"
