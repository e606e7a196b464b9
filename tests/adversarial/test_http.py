"""Hostile job ids and bad stills over real sockets: ``/v1/jobs/{id}`` and ``POST /v1/images``.

Job ids go on the wire verbatim (``http.client`` does not normalise ``..`` or re-encode ``%2F``), so the
server sees exactly what an attacker would send. A canary file next to the data dir and the job store's
own files must survive every request.
"""

import http.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.adversarial import media
from tests.adversarial.conftest import assert_healthy_and_clean, problem
from tests.service.conftest import LiveServer

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class RawResponse:
    """What came back for a request sent byte for byte."""

    status: int
    content_type: str
    body: bytes


def send_verbatim(server: LiveServer, method: str, target: str) -> RawResponse:
    """``method target HTTP/1.1`` with the target exactly as given (no normalisation, no re-encoding)."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return RawResponse(response.status, response.getheader("content-type", ""), response.read())
    finally:
        connection.close()


TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252F..%252Fetc%252Fpasswd",
    "..%5C..%5Cjobs.sqlite3",
    "..",
    "%2e%2e",
    "..%2F..%2Fcanary",
    "%00",
    "a%00b",
    "%E2%80%AE%E2%80%8Bjob",
    "x" * 4000,
]
TARGETS = [
    *[("GET", f"/v1/jobs/{bad}") for bad in TRAVERSALS],
    *[("GET", f"/v1/jobs/{bad}/result") for bad in TRAVERSALS],
    *[("DELETE", f"/v1/jobs/{bad}") for bad in TRAVERSALS],
]


@pytest.fixture(scope="module")
def canary(server: LiveServer) -> Path:
    """A file beside the data dir that a traversing DELETE would remove."""
    path = server.settings.data_dir.parent / "canary"
    path.write_text("still here")
    return path


@pytest.mark.parametrize(("method", "target"), TARGETS, ids=[f"{m} {t[:40]}" for m, t in TARGETS])
def test_hostile_job_ids_are_404_and_touch_nothing(
    server: LiveServer, canary: Path, method: str, target: str
) -> None:
    store = server.settings.data_dir / "jobs.sqlite3"
    response = send_verbatim(server, method, target)
    assert response.status == 404, (response.status, response.body[:300])
    assert response.content_type == "application/problem+json"
    assert b"does not exist" in response.body or b"is not a job" in response.body, response.body[:300]
    assert canary.read_text() == "still here"
    assert store.is_file()


def test_hostile_cursor_is_422(server: LiveServer) -> None:
    response = send_verbatim(server, "GET", "/v1/jobs?cursor=..%2F..%2Fetc%2Fpasswd")
    assert response.status == 422
    assert b"cursor" in response.body


@dataclass(frozen=True)
class ImageCase:
    """A row for ``POST /v1/images``: the body, the status, and a fragment of the problem detail."""

    name: str
    body: Callable[[], bytes]
    status: int
    message: str = ""


IMAGE_CASES = [
    ImageCase("empty", lambda: b"", 422, "empty (0 bytes)"),
    ImageCase("text_as_png", lambda: b"just words, no pixels\n" * 20, 422, "not an image"),
    ImageCase("truncated_png", lambda: media.half(media.still("PNG", 256, 256)), 422, "truncated"),
    ImageCase("png_bomb_9000x9000", lambda: media.png_bomb(9000, 9000), 415, "9000x9000"),
    # Above 2 x its pixel limit (~179 Mpx) Pillow raises DecompressionBombError, which is neither OSError nor
    # ValueError, from Image.open, before read_sdr_image's size check: service/images/read.py must map it.
    ImageCase("png_bomb_16384x16384", media.png_bomb, 415, "16384x16384"),
    ImageCase("pq_png_already_hdr", media.pq_png, 422, "HDR"),
    ImageCase("video_sent_as_image", lambda: media.random_bytes(Path()), 422, "not an image"),
    ImageCase("1x1_png", lambda: media.still("PNG", 1, 1), 200),
    ImageCase("odd_sized_jpeg", lambda: media.still("JPEG", 33, 17), 200),
]


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c.name for c in IMAGE_CASES])
def test_image_case(server: LiveServer, case: ImageCase) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post("/v1/images", content=case.body(), headers={"Content-Type": "image/png"})
    if case.status == 200:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG") and b"cICP" in response.content
    else:
        problem(response, case.status, case.message)
    assert_healthy_and_clean(server)


def test_server_is_healthy_after_the_corpus(server: LiveServer, canary: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post("/v1/images", content=media.still("PNG"))
    assert response.status_code == 200
    assert canary.read_text() == "still here"
    assert_healthy_and_clean(server)
