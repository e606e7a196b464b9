"""Shared fixtures for the service tests: synthetic clips made with PyAV, ffprobe, the shared data set, and a
real uvicorn server on an ephemeral loopback port (jobs, stream and client tests over real sockets)."""

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.colour.pq import eotf_st2084
from service.colour.tags import Range
from service.colour.ycbcr import LUMA_BT2020, dequantize, upsample_420_nearest, ycbcr_to_rgb
from service.config import Settings
from service.server import DrainingServer, config_for

DATA_VIDEO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"


def make_clip(
    path: Path,
    *,
    frames: int = 12,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    codec: str = "libx264",
    audio: bool = False,
    pix_fmt: str = "yuv420p",
    colour: dict[str, int] | None = None,
    pts_step: list[int] | None = None,
    rgb: np.ndarray | None = None,
) -> Path:
    """Write a small clip: a moving gradient (or ``rgb`` repeated), optionally with an AAC track."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        tb = Fraction(1, fps * (1 if pts_step is None else 10))
        video.time_base = tb
        video.codec_context.time_base = tb
        for k, v in (colour or {}).items():
            setattr(video.codec_context, k, v)
        stream_audio = out.add_stream("aac", rate=48000) if audio else None
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        pts = 0
        for i in range(frames):
            if rgb is None:
                img = np.empty((height, width, 3), np.uint8)
                img[..., 0] = ((ramp + 8 * i) % 256).astype(np.uint8)
                img[..., 1] = np.linspace(0, 255, height, dtype=np.float32)[:, None].astype(np.uint8)
                img[..., 2] = 128
            else:
                img = rgb
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = pts
            frame.time_base = tb
            pts += 1 if pts_step is None else pts_step[i % len(pts_step)]
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if stream_audio is not None:
            samples = int(48000 * frames / fps)
            t = np.arange(samples, dtype=np.float32) / 48000
            wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = wave[start : start + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate = 48000
                af.pts = start
                for packet in stream_audio.encode(af):
                    out.mux(packet)
            for packet in stream_audio.encode(None):
                out.mux(packet)
    return path


@pytest.fixture
def clip_factory(tmp_path: Path) -> Callable[..., Path]:
    """``clip_factory(name, **make_clip_kwargs)`` -> path of a fresh clip in the test's tmp dir."""

    def factory(name: str = "src.mp4", **kwargs: object) -> Path:
        return make_clip(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return factory


def ffprobe(path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    """ffprobe JSON for ``path`` (skips the test when Debian's ffmpeg is not installed)."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (apt-get install -y ffmpeg)")
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def first_frame_side_data(path: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    """Side data of the first video frame, by type name, as ffprobe reports it."""
    info = ffprobe(path, "-select_streams", "v:0", "-show_frames", "-read_intervals", "%+#1")
    return {sd["side_data_type"]: sd for sd in info["frames"][0].get("side_data_list", [])}


def reference_light_levels(path: Path) -> tuple[float, float, int]:
    """(MaxCLL, MaxFALL, frames) recomputed with the NumPy reference path, independent of the kernels."""
    max_light = 0.0
    max_average = 0.0
    count = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            f = frame.reformat(format="yuv420p10le") if frame.format.name != "yuv420p10le" else frame
            planes = []
            for index in range(3):
                plane = f.planes[index]
                rows = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)
                planes.append(rows[:, : plane.width])
            y, u, v = planes
            codes = np.stack([y, upsample_420_nearest(u), upsample_420_nearest(v)], axis=-1)
            ycc = dequantize(codes, 10, Range.MPEG)
            rgb = ycbcr_to_rgb(ycc, LUMA_BT2020)
            light = eotf_st2084(rgb).max(axis=-1)
            max_light = max(max_light, float(light.max()))
            max_average = max(max_average, float(light.mean()))
            count += 1
    return max_light, max_average, count


def video_packets(path: Path, kind: str = "audio") -> list[bytes]:
    """Payloads of every packet of the first stream of ``kind``, in file order."""
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        return [bytes(p) for p in container.demux(stream) if p.size]


@pytest.fixture
def data_video() -> Path:
    """The shared sample clips (skips when the data set is absent)."""
    if not DATA_VIDEO.is_dir():
        pytest.skip(f"shared video data not found at {DATA_VIDEO}")
    return DATA_VIDEO


@dataclass
class LiveServer:
    url: str
    ws_url: str
    settings: Settings
    registry: CollectorRegistry
    server: uvicorn.Server
    thread: threading.Thread

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def start_server(tmp_path: Path, **overrides: Any) -> LiveServer:
    converter = overrides.pop("converter", None)
    overrides.setdefault("default_operator", "bt2446a")  # classical: fast to warm, exact references
    settings = Settings(data_dir=tmp_path / "data", workers=2, port=0, **overrides)
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, converter=converter)
    server = DrainingServer(config_for(app, "127.0.0.1", 0, "warning"), app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", settings, registry, server, thread
    )
    return live


@pytest.fixture
def live_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def factory(**overrides: Any) -> LiveServer:
        server = start_server(tmp_path, **overrides)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def live(live_factory: Callable[..., LiveServer]) -> LiveServer:
    server = live_factory()
    import httpx

    server.wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)
    return server
