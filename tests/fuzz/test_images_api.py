"""POST /v1/images fuzzed over a real socket with real and broken images (schemathesis never sends real ones).

The contract (the convert_image docstring): a readable SDR still comes back as a PQ PNG or a linear EXR of
the same size; anything else is a documented 4xx problem. Never a 5xx.
"""

import io
from typing import Any

import httpx
import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tests.fuzz.openapi import SCHEMA, assert_problem
from tests.fuzz.strategies import image_payloads, png_with_header
from tests.service.conftest import LiveServer

EXR_MAGIC = b"\x76\x2f\x31\x01"
MODES = {"RGB": 3, "RGBA": 4, "L": 0, "LA": 2, "P": 0, "I;16": 0, "CMYK": 4}


@st.composite
def images(draw: st.DrawFn) -> tuple[bytes, str, tuple[int, int]]:
    """(file, media type, (width, height)) for an SDR still in any mode PNG or JPEG can hold."""
    mode = draw(st.sampled_from(sorted(MODES)))
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    channels = MODES[mode]
    dtype = np.uint16 if mode == "I;16" else np.uint8
    shape = (h, w, channels) if channels else (h, w)
    pixels = draw(hnp.arrays(dtype, shape))
    image = Image.fromarray(pixels, mode="RGBA" if mode == "CMYK" else None)
    image = image.convert(mode) if mode not in ("I;16",) else Image.fromarray(pixels)
    fmt = (
        "JPEG"
        if mode == "CMYK"
        else draw(st.sampled_from(["PNG", "JPEG"] if mode in ("RGB", "L") else ["PNG"]))
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue(), f"image/{fmt.lower()}", (w, h)


QUERIES = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from(["png", "exr"]),
        "operator": st.sampled_from(["bt2408", "bt2446a", "inverse_reinhard"]),
        "peak_nits": st.floats(203.0, 10000.0),
    },
)


def post(
    server: LiveServer, body: bytes, media: str, query: dict[str, Any], multipart: bool
) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        if multipart:
            request = client.build_request(
                "POST", "/v1/images", params=query, files={"file": ("x", body, media)}
            )
        else:
            headers = {"content-type": media}
            request = client.build_request("POST", "/v1/images", params=query, content=body, headers=headers)
        request.read()  # a multipart body is a stream; the schema validator reads the request again
        response = client.send(request)
    SCHEMA["/v1/images"]["POST"].validate_response(response)
    if response.status_code >= 400:
        assert_problem(response.status_code, response.headers["content-type"], response.content)
    return response


@given(image=images(), query=QUERIES, multipart=st.booleans())
def test_a_readable_still_comes_back_hdr_at_its_size(
    fuzz_server: LiveServer, image: tuple[bytes, str, tuple[int, int]], query: dict[str, Any], multipart: bool
) -> None:
    body, media, size = image
    response = post(fuzz_server, body, media, query, multipart)
    assert response.status_code == 200, response.text
    if query.get("format") == "exr":
        assert response.content.startswith(EXR_MAGIC)
    else:
        with Image.open(io.BytesIO(response.content)) as out:
            assert out.format == "PNG" and out.size == size


@given(payload=image_payloads(), query=QUERIES, multipart=st.booleans())
def test_any_bytes_are_a_conversion_or_a_documented_4xx(
    fuzz_server: LiveServer, payload: tuple[str, bytes], query: dict[str, Any], multipart: bool
) -> None:
    fmt, body = payload
    response = post(fuzz_server, body, f"image/{fmt}", query, multipart)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 413, 415, 422), response.text


def test_a_header_declaring_billions_of_pixels_is_refused_with_415(fuzz_server: LiveServer) -> None:
    response = post(fuzz_server, png_with_header(20_000, 20_000, 8, 2), "image/png", {}, multipart=False)
    assert response.status_code == 415, response.text
