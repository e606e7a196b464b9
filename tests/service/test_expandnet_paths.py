"""``expandnet`` everywhere ``mqn`` is: ``itmstream operators`` and ``convert``, a REST job, ``/v1/images``
and a WebSocket stream frame, with a smoke-trained model (none is shipped yet); and, without a model, a
clear error on each path instead of a crash."""

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
from service.operators import create_operator
from tests.models.expandnet_smoke import expandnet_dir, needs_smoke_model

from .conftest import ffprobe, make_clip
from .jobs.test_jobs import wait_final

__all__ = ["expandnet_dir"]

pytestmark = pytest.mark.timeout(300)
FRAME_HEADER = b"\x00" * 16  # seq 0, flags 0, timestamp 0 (docs/PROTOCOL.md)
RESULT_HEADER_BYTES = 48
STREAM_MAX_CODES = 1
"""A worker's interpreters (its own thread count) may round a code differently from the test's."""


def test_operators_lists_expandnet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    assert "expandnet: ExpandNet" in out
    assert "native resolution" in out


def test_cli_without_a_model_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path / "empty"))
    src = make_clip(tmp_path / "in.mp4", frames=2)
    assert main(["convert", str(src), str(tmp_path / "out.mp4"), "--operator", "expandnet", "-q"]) == 1
    err = capsys.readouterr().err
    assert "expandnet is not available" in err and "python -m models.train --model expandnet" in err
    assert not (tmp_path / "out.mp4").exists()


@needs_smoke_model
def test_cli_converts_a_clip(expandnet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=6, width=96, height=64)
    dst = tmp_path / "out.mkv"
    assert (
        main(["convert", str(src), str(dst), "--operator", "expandnet", "--preset", "ultrafast", "-q"]) == 0
    )
    stream = ffprobe(dst, "-show_streams", "-select_streams", "v:0")["streams"][0]
    assert stream["color_transfer"] == "smpte2084" and stream["pix_fmt"] == "yuv420p10le"


@needs_smoke_model
def test_rest_job_and_image(expandnet_dir: Path, live: Any, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=4, width=64, height=48)
    with httpx.Client(base_url=live.url, timeout=120) as client:
        response = client.post(
            "/v1/jobs",
            params={"operator": "expandnet", "preset": "ultrafast"},
            content=clip.read_bytes(),
            headers={"Content-Type": "video/mp4"},
        )
        assert response.status_code == 202, response.text
        assert response.json()["options"]["operator"] == "expandnet"
        job = wait_final(client, response.headers["location"])
        assert job["state"] == "succeeded", job
        out = tmp_path / "out.mp4"
        out.write_bytes(client.get(job["result_url"]).content)
        buffer = io.BytesIO()
        Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(buffer, format="PNG")
        image = client.post(
            "/v1/images",
            params={"operator": "expandnet"},
            content=buffer.getvalue(),
            headers={"Content-Type": "image/png"},
        )
        assert image.status_code == 200, image.text
    assert (
        ffprobe(out, "-show_streams", "-select_streams", "v:0")["streams"][0]["color_transfer"] == "smpte2084"
    )
    assert live.sample("itm_frames_total", {"endpoint": "jobs", "operator": "expandnet"}) == 4
    assert live.sample("itm_frames_total", {"endpoint": "images", "operator": "expandnet"}) == 1


@needs_smoke_model
def test_stream_frame(expandnet_dir: Path, live: Any) -> None:
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
        "operator": "expandnet",
    }
    with connect(f"{live.ws_url}/v1/stream", max_size=None, open_timeout=30) as ws:
        ws.send(json.dumps(hello))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and ready["operator"] == "expandnet", ready
        ws.send(FRAME_HEADER + pixels.tobytes())
        message = ws.recv(timeout=60)
        assert isinstance(message, bytes)
        ws.send(json.dumps({"type": "bye"}))
    packed = np.frombuffer(message[RESULT_HEADER_BYTES:], np.uint32).reshape(h, w)
    nits = create_operator("expandnet", peak_nits=1000.0)(pixels[None], ColourDescription.still())[0]
    from service.colour.packing import pack_rgb10a2

    expected = pack_rgb10a2(nits)
    for shift in (0, 10, 20):
        got_codes = (packed >> shift) & 0x3FF
        want_codes = (expected >> shift) & 0x3FF
        assert np.abs(got_codes.astype(np.int64) - want_codes).max() <= STREAM_MAX_CODES


def test_rest_without_a_model_names_the_missing_file(
    live: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path / "empty"))
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(buffer, format="PNG")
    with httpx.Client(base_url=live.url, timeout=60) as client:
        response = client.post(
            "/v1/images",
            params={"operator": "expandnet"},
            content=buffer.getvalue(),
            headers={"Content-Type": "image/png"},
        )
    assert response.status_code == 500
    assert "expandnet is not available" in response.json()["detail"]
