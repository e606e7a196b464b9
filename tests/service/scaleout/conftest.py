"""Scale-out test helpers: clips, the comparison with the in-process output, a real two-node Ray cluster."""

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import pytest

from service.inference.types import OperatorSpec
from service.pipeline import ConversionResult, ConvertOptions, convert_video
from service.scaleout.cluster import RAY_CLIENT_HEAD_ENV
from service.scaleout.split import SplitVideo, plan_video, segment_inputs
from tests.adversarial.media import ffmpeg

SPEC = OperatorSpec.of("bt2408", peak_nits=1000.0)


def gop_clip(
    path: Path, *, seconds: float = 4.0, gop: int = 25, audio: bool = True, size: str = "128x72"
) -> Path:
    """A testsrc2 clip (25 fps, H.264 with B-frames, a keyframe every ``gop`` frames), with a sine track."""
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    ffmpeg(*inputs, "-c:v", "libx264", "-g", str(gop), "-bf", "2", "-pix_fmt", "yuv420p", str(path))
    return path


def cut(src: Path, segment_seconds: float) -> SplitVideo:
    """The driver's plan of ``src`` with every segment's bytes, streamed as the driver cuts them."""
    plan = plan_video(src, segment_seconds, ConvertOptions())
    return replace(plan, segments=tuple(segment_inputs(src, plan, ConvertOptions())))


@dataclass(frozen=True)
class Decoded:
    pts_s: list[float]
    luma: list[np.ndarray]


def decode(path: Path) -> Decoded:
    """Every frame's presentation time (s) and 10-bit luma, decoded end to end with PyAV."""
    pts, luma = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            pts.append(round(float(frame.pts * stream.time_base), 6))
            plane = frame.planes[0]
            rows = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)
            luma.append(rows[:, : plane.width].astype(np.float64))
    return Decoded(pts, luma)


def luma_psnr(a: Decoded, b: Decoded) -> float:
    """PSNR over all frames of two decodes' 10-bit luma (peak 1023)."""
    mse = np.mean([np.mean((x - y) ** 2) for x, y in zip(a.luma, b.luma, strict=True)])
    return float("inf") if mse == 0 else float(10 * np.log10(1023**2 / mse))


@pytest.fixture
def in_process(tmp_path: Path) -> Callable[[Path, str], ConversionResult]:
    """The single-process reference conversion of a clip (``suffix`` picks the container)."""

    def run(src: Path, suffix: str = ".mp4") -> ConversionResult:
        reference = tmp_path / "reference"
        reference.mkdir(exist_ok=True)
        return convert_video(src, reference / f"{src.stem}{suffix}", SPEC.create())

    return run


RAY_PORT = 6390
DASHBOARD_PORT = 8290
CLIENT_PORT = 10001
CLIENT_ADDRESS = f"ray://127.0.0.1:{CLIENT_PORT}"
"""The test cluster's head through Ray Client, as the Helm chart points the service at its head."""
ROOT = Path(__file__).resolve().parents[3]


def only_loopback() -> bool:
    """Whether this process sits in a network namespace whose only interface is loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]  # asks the kernel: /sys may be the host's


NODE_ARGS = ("--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats")


def _ray(*args: str, extra_env: Mapping[str, str] | None = None) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT), **(extra_env or {})}
    subprocess.run(
        [str(Path(sys.executable).parent / "ray"), *args],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A real two-node Ray cluster on this machine (one CPU each), stopped afterwards; yields its address.

    Some Ray agents listen on every interface whatever ``--node-ip-address`` says, so the cluster only starts
    in a private network namespace that has nothing but loopback (``make test`` runs these tests in one).
    Workers get the repository on ``PYTHONPATH``, so the test operators import there as they do here.
    The head serves Ray Client at :data:`CLIENT_ADDRESS`, started as the Helm chart starts it: dashboard on,
    in :data:`~service.scaleout.cluster.RAY_CLIENT_HEAD_ENV`. This process joins as a driver on a node.
    """
    ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
    if not only_loopback():
        pytest.skip("Ray tests run only in a private network namespace with loopback alone (see `make test`)")
    address = f"127.0.0.1:{RAY_PORT}"
    common = NODE_ARGS
    try:
        dashboard = ["--include-dashboard", "true", "--dashboard-port", str(DASHBOARD_PORT)]
        head = ["--port", str(RAY_PORT), *dashboard, "--dashboard-host", "127.0.0.1"]
        client = ["--ray-client-server-port", str(CLIENT_PORT)]
        _ray("start", "--head", *head, *client, *common, extra_env=RAY_CLIENT_HEAD_ENV)
        _ray("start", "--address", address, *common)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
        _wait_for_nodes(2)
        yield address
    finally:
        ray.shutdown()
        _ray("stop", "--grace-period", "2")  # SIGTERM, then SIGKILL: --force alone waits ~25 s here


def _alive_nodes() -> set[str]:
    import ray

    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def _wait_for_nodes(count: int) -> None:
    deadline = time.monotonic() + 60
    while len(_alive_nodes()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} Ray nodes are alive")
        time.sleep(0.2)


def add_node(address: str) -> tuple[str, int]:
    """Start one more one-CPU node in the cluster; returns its node id and its raylet's pid (to kill it)."""
    before = _alive_nodes()
    _ray("start", "--address", address, *NODE_ARGS)
    _wait_for_nodes(len(before) + 1)
    (node_id,) = _alive_nodes() - before
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"raylet") and f"--node_id={node_id}".encode() in argv:
            return node_id, int(proc.name)
    raise RuntimeError(f"no raylet process found for node {node_id}")
