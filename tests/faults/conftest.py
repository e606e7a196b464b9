"""Fault-injection fixtures: the server as a real child process (so it can be SIGKILLed and its RSS and open
files read from /proc), a tmpfs data dir (disk full), job and HDR10 checks, and a raw WebSocket client that
can misbehave in ways a well-behaved client library will not (never read, vanish without a close).

Clips come from :func:`tests.service.conftest.make_clip`, ffprobe from the same module.
"""

import base64
import contextlib
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.pipeline import is_temp_file
from tests.service.conftest import ffprobe
from tests.service.conftest import live_factory as live_factory  # in-process server, for white-box checks

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("succeeded", "failed", "cancelled")
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s.

    A deadline for a condition, not a timing assertion: fast machines pass sooner, slow ones still pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def spawned_children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that multiprocessing's spawn started (job child, prober)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def alive(pid: int) -> bool:
    """Running, and not a zombie left for a reaper (a container's PID 1 may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def has_open_file_under(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` holds a file inside ``folder`` open."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return any(link.startswith(f"{folder}/") for link in links)


@dataclass
class ServerProcess:
    """``itmstream serve`` in a child process on an ephemeral port, with its data dir and log."""

    data_dir: Path
    log: Path
    settings: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    children: list[int] = field(default_factory=list)
    """multiprocessing children alive when the server was SIGKILLed (to end them if they outlive it)."""
    _log_file: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def start(self) -> "ServerProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith("ITM_")}
        env.update(
            ITM_DATA_DIR=str(self.data_dir),
            ITM_HOST="127.0.0.1",
            ITM_PORT="0",
            ITM_LOG_LEVEL="INFO",
            ITM_DEFAULT_OPERATOR="bt2408",
            ITM_WORKERS="2",
        )
        env.update({f"ITM_{k.upper()}": v for k, v in self.settings.items()})
        offset = self.log.stat().st_size if self.log.exists() else 0  # the log is shared by restarts
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

        def port() -> str | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            match = _LISTENING.search(self.log.read_bytes()[offset:].decode(errors="replace"))
            return match.group(1) if match else None

        self.url = f"http://127.0.0.1:{wait_until(port, 60, 'the server to listen')}"
        wait_until(self.ready, 60, "/readyz to turn 200")
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL: no lifespan shutdown, no cleanup, exactly like the OOM killer.

        Its worker processes are noted first: whatever of them survives is ended at teardown, by pid.
        """
        assert self.proc is not None
        self.children = spawned_children(self.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log_file.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL; then end orphans a kill left. For teardown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
            self._log_file.close()
        for pid in self.children:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    return float(sample.value)
        return 0.0


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``server_factory(data_dir=None, **settings)`` starts a server process; all are stopped at the end.

    Settings are ``Settings`` field names (``job_concurrency=1`` -> ``ITM_JOB_CONCURRENCY=1``).
    """
    servers: list[ServerProcess] = []

    def factory(data_dir: Path | None = None, **settings: object) -> ServerProcess:
        server = ServerProcess(
            data_dir or tmp_path / "data", tmp_path / "server.log", {k: str(v) for k, v in settings.items()}
        )
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


def submit(client: httpx.Client, clip: Path, **options: object) -> str:
    """Upload ``clip`` as a job and return its location."""
    params = {"preset": "ultrafast", **{k: str(v) for k, v in options.items()}}
    response = client.post("/v1/jobs", params=params, content=clip.read_bytes())
    assert response.status_code == 202, response.text
    return response.headers["location"]


def wait_final(client: httpx.Client, location: str, timeout: float = 60.0) -> dict[str, Any]:
    """The job once it reached a final state."""
    job: dict[str, Any] = wait_until(
        lambda: (j := client.get(location).json())["state"] in FINAL and j, timeout, f"{location} to finish"
    )
    return job


def assert_valid_hdr10(path: Path, frames: int) -> None:
    """The file is HEVC Main10, tagged PQ / BT.2020, and every one of ``frames`` frames decodes."""
    info = ffprobe(path, "-show_streams", "-select_streams", "v:0", "-count_frames")["streams"][0]
    assert info["color_transfer"] == "smpte2084", info
    assert info["color_primaries"] == "bt2020", info
    assert info["color_space"] == "bt2020nc", info
    assert info["pix_fmt"] == "yuv420p10le", info
    assert int(info["nb_read_frames"]) == frames, info
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == frames


def leftovers(data_dir: Path) -> list[Path]:
    """Temporaries anywhere under the data dir: pipeline temps, partial uploads, the upload scratch dir."""
    found = [p for p in data_dir.rglob("*") if p.is_file() and (is_temp_file(p) or p.suffix == ".part")]
    return sorted(found)


def clip_of(path: Path, images: Iterable[np.ndarray], crf: int = 23) -> Path:
    """An H.264 clip of exactly these H x W x 3 uint8 frames, 25 fps (make_clip repeats one image)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for i, image in enumerate(images):
            if i == 0:
                stream.height, stream.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def noise_clip(path: Path, frames: int, width: int = 128, height: int = 96, seed: int = 0) -> Path:
    """A clip of fresh noise every frame: incompressible, so its lossless HDR10 encode is large."""
    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames))
    return clip_of(path, images, crf=35)  # crf 35 keeps the upload small; the noise survives well enough


@pytest.fixture
def tmpfs(tmp_path: Path) -> Callable[[str, int], Path]:
    """``tmpfs(name, kib)`` mounts a tmpfs of that size under the test's tmp dir; unmounted at teardown.

    Skips when mounting is not allowed (unprivileged CI runners, containers without CAP_SYS_ADMIN).
    """
    mounts: list[Path] = []

    def mount(name: str, kib: int) -> Path:
        point = tmp_path / name
        point.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(point)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {result.stderr.strip()}")
        mounts.append(point)
        return point

    try:
        yield mount  # type: ignore[misc]
    finally:
        for point in mounts:
            subprocess.run(["umount", "-l", str(point)], check=False)


class RawWebSocket:
    """A minimal RFC 6455 client on a bare socket, for clients that misbehave on purpose.

    It never reads after the handshake unless asked, never answers pings, and can vanish with a TCP reset
    (``SO_LINGER`` 0) instead of a close handshake: what a crashed app or a dropped phone looks like.
    """

    def __init__(self, ws_url: str, timeout: float = 10.0) -> None:
        host, port = ws_url.removeprefix("ws://").split("/")[0].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(
            (
                f"GET /v1/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response[:200]
        self.buffered = response.split(b"\r\n\r\n", 1)[1]

    def send(self, payload: bytes | str) -> None:
        opcode = 0x1 if isinstance(payload, str) else 0x2
        data = payload.encode() if isinstance(payload, str) else payload
        mask = secrets.token_bytes(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.sock.sendall(header + mask + masked)

    def recv_text(self) -> str:
        """Read one unfragmented text message (only used for ``ready``)."""
        while True:
            if len(self.buffered) >= 2:
                opcode, n = self.buffered[0] & 0x0F, self.buffered[1] & 0x7F
                offset = 2
                if n == 126:
                    n, offset = struct.unpack("!H", self.buffered[2:4])[0], 4
                elif n == 127:
                    n, offset = struct.unpack("!Q", self.buffered[2:10])[0], 10
                if len(self.buffered) >= offset + n:
                    data, self.buffered = self.buffered[offset : offset + n], self.buffered[offset + n :]
                    assert opcode == 0x1, f"expected a text message, got opcode {opcode}: {data[:100]!r}"
                    return data.decode()
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffered += chunk

    def vanish(self) -> None:
        """Drop the connection with a TCP reset: no close frame, no FIN handshake."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.close()
