"""The service in a child process on loopback, and real-clip frames, shared by the service benchmarks.

A child process (not a thread) so that its RSS and open file descriptors are the server's alone, measured
from ``/proc`` while the benchmark's own clients run in the parent.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "data" / "video"
CLIP = VIDEO / "bigbuckbunny.mp4"


def free_port() -> int:
    """An unused loopback port (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``itmstream serve`` in a child process with its own data dir; ``**env`` are ``ITM_*`` overrides.

    With ``log`` the child's output goes to that file instead of the terminal (a long run logs a lot).
    """

    def __init__(self, log: Path | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.data = tempfile.TemporaryDirectory(prefix="itm-bench-")
        self.env = env
        child_env = {**os.environ, "ITM_DATA_DIR": self.data.name, "ITM_LOG_LEVEL": "WARNING", **env}
        child_env["PYTHONPATH"] = str(ROOT)
        code = f"from service.server import serve; serve('127.0.0.1', {self.port})"
        self.log = log
        output = log.open("ab") if log is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], env=child_env, cwd=ROOT, stdout=output, stderr=output
        )
        if output is not None:
            output.close()  # the child holds its own descriptor

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds until ``/readyz`` answered 200 (operators warmed)."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server not ready")

    def rss_mb(self) -> float:
        """Resident set size of the server process, MiB."""
        for row in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) / 1024
        return float("nan")

    def open_fds(self) -> int:
        """File descriptors the server process holds (sockets, files, pipes)."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def metric_samples(self, name: str) -> dict[str, float]:
        """Every sample of ``/metrics`` whose line starts with ``name``, keyed by name and labels."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            row.rsplit(" ", 1)[0]: float(row.rsplit(" ", 1)[1])
            for row in text.splitlines()
            if row.startswith(name)
        }

    def stop(self) -> None:
        """SIGTERM (graceful drain), SIGKILL after 30 s; removes the data dir."""
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.data.cleanup()


def load_frames(height: int, width: int, count: int, clip: Path = CLIP) -> list[bytes]:
    """Decode ``count`` frames of ``clip``, scaled to ``height`` x ``width``, as rgb24 payloads."""
    frames: list[bytes] = []
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
            frames.append(np.ascontiguousarray(rgb).tobytes())
            if len(frames) == count:
                break
    return frames
