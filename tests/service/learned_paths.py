"""The checks that put a learned operator everywhere ``mqn`` is, for any operator name (one definition).

``itmstream convert`` on a clip, a REST job and ``/v1/images``, and one WebSocket stream frame compared with
the operator run in-process; and, without a model, a clear error on the CLI and REST paths. Each learned
operator's ``test_<name>_paths.py`` calls these with its own smoke model in place.
"""

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from service.cli import main
from service.colour.description import ColourDescription
from service.colour.packing import pack_rgb10a2
from service.operators import create_operator

from .conftest import ffprobe, make_clip
from .jobs.test_jobs import wait_final

FRAME_HEADER = b"\x00" * 16  # seq 0, flags 0, timestamp 0 (docs/PROTOCOL.md)
RESULT_HEADER_BYTES = 48
STREAM_MAX_CODES = 1
"""A worker's interpreters (its own thread count) may round a code differently from the test's."""


def _png(value: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def check_cli_without_a_model(operator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``convert`` fails (exit 1), says how to make the model, and writes nothing."""
    src = make_clip(tmp_path / "in.mp4", frames=2)
    assert main(["convert", str(src), str(tmp_path / "out.mp4"), "--operator", operator, "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{operator} is not available" in err and f"python -m models.train --model {operator}" in err
    assert not (tmp_path / "out.mp4").exists()


def check_cli_converts_a_clip(operator: str, tmp_path: Path, *extra: str) -> None:
    """``convert`` writes a PQ, 10-bit clip."""
    src = make_clip(tmp_path / "in.mp4", frames=6, width=96, height=64)
    dst = tmp_path / "out.mkv"
    args = ["convert", str(src), str(dst), "--operator", operator, *extra, "--preset", "ultrafast", "-q"]
    assert main(args) == 0
    stream = ffprobe(dst, "-show_streams", "-select_streams", "v:0")["streams"][0]
    assert stream["color_transfer"] == "smpte2084" and stream["pix_fmt"] == "yuv420p10le"


def check_rest_job_and_image(operator: str, live: Any, tmp_path: Path) -> None:
    """A REST job converts a clip and ``/v1/images`` an image; both count their frames."""
    clip = make_clip(tmp_path / "in.mp4", frames=4, width=64, height=48)
    with httpx.Client(base_url=live.url, timeout=120) as client:
        response = client.post(
            "/v1/jobs",
            params={"operator": operator, "preset": "ultrafast"},
            content=clip.read_bytes(),
            headers={"Content-Type": "video/mp4"},
        )
        assert response.status_code == 202, response.text
        assert response.json()["options"]["operator"] == operator
        job = wait_final(client, response.headers["location"])
        assert job["state"] == "succeeded", job
        out = tmp_path / "out.mp4"
        out.write_bytes(client.get(job["result_url"]).content)
        image = client.post(
            "/v1/images", params={"operator": operator}, content=_png(), headers={"Content-Type": "image/png"}
        )
        assert image.status_code == 200, image.text
    assert (
        ffprobe(out, "-show_streams", "-select_streams", "v:0")["streams"][0]["color_transfer"] == "smpte2084"
    )
    assert live.sample("itm_frames_total", {"endpoint": "jobs", "operator": operator}) == 4
    assert live.sample("itm_frames_total", {"endpoint": "images", "operator": operator}) == 1


def check_stream_frame(operator: str, live: Any) -> None:
    """One lossless WebSocket frame comes back as the operator computes it in-process (within a code)."""
    h, w = 24, 32
    pixels = np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)
    hello = {
        "type": "hello",
        "width": w,
        "height": h,
        "input": "rgb24",
        "output": "rgb10a2",
        "credits": 1,
        "mode": "lossless",
        "operator": operator,
    }
    with connect(f"{live.ws_url}/v1/stream", max_size=None, open_timeout=30) as ws:
        ws.send(json.dumps(hello))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and ready["operator"] == operator, ready
        ws.send(FRAME_HEADER + pixels.tobytes())
        message = ws.recv(timeout=60)
        assert isinstance(message, bytes)
        ws.send(json.dumps({"type": "bye"}))
    packed = np.frombuffer(message[RESULT_HEADER_BYTES:], np.uint32).reshape(h, w)
    nits = create_operator(operator, peak_nits=1000.0)(pixels[None], ColourDescription.still())[0]
    expected = pack_rgb10a2(nits)
    for shift in (0, 10, 20):
        got_codes = (packed >> shift) & 0x3FF
        want_codes = (expected >> shift) & 0x3FF
        assert np.abs(got_codes.astype(np.int64) - want_codes).max() <= STREAM_MAX_CODES


def check_rest_without_a_model(operator: str, live: Any) -> None:
    """``/v1/images`` answers 500 with the missing model named."""
    with httpx.Client(base_url=live.url, timeout=60) as client:
        response = client.post(
            "/v1/images", params={"operator": operator}, content=_png(), headers={"Content-Type": "image/png"}
        )
    assert response.status_code == 500
    assert f"{operator} is not available" in response.json()["detail"]
