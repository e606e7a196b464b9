"""Overload over real sockets: the service sheds load with the answers docs/PROTOCOL.md and the README promise
(live drops reported and counted, lossless backpressure without loss, 503 + Retry-After, 1013) instead of
queueing without bound.

Timing must not decide whether a queue is full, so every test holds inference behind an
:class:`InferenceGate`: a stand-in for the pool's ``run_batch`` that blocks each batch on an event until the
test releases it. With ``workers=2`` and ``queue_size=1`` exactly three frames fill the server (two held on
workers, one in the batcher queue), and each test waits for that state before it overloads.
"""

import contextlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from clients.protocol import FRAME_HEADER, RESULT_HEADER
from service.api.state import ServiceState
from tests.service.conftest import LiveServer

pytestmark = pytest.mark.timeout(60)

H, W = 24, 32
PROBLEM = "application/problem+json"


class InferenceGate:
    """Replaces ``WorkerPool.run_batch`` on a running server: each batch waits for :attr:`release`."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.release = threading.Event()
        self.entered = 0
        self.outputs: list[str] = []
        """``BatchKey.output`` of each batch in the order batches reached a worker."""
        self._lock = threading.Lock()
        self._run = state.pool.run_batch
        state.pool.run_batch = self  # an instance attribute shadows the method for the batcher's calls

    def __call__(self, key: Any, frames: list[np.ndarray]) -> Any:
        with self._lock:
            self.entered += 1
            self.outputs.append(key.output)
        if not self.release.wait(50):
            raise RuntimeError("inference gate never released")
        return self._run(key, frames)

    @property
    def queued(self) -> int:
        """Frames in the batcher queue (not yet on a worker)."""
        return self.state.batcher.depth


@pytest.fixture
def gated(
    live_factory: Callable[..., LiveServer],
) -> Iterator[Callable[..., tuple[LiveServer, InferenceGate]]]:
    """``gated(**settings)``: a ready server (2 workers, queue of 1 unless overridden), its gate closed."""
    gates: list[InferenceGate] = []

    def factory(**overrides: Any) -> tuple[LiveServer, InferenceGate]:
        overrides.setdefault("queue_size", 1)
        live = live_factory(**overrides)
        live.wait_for(lambda: httpx.get(f"{live.url}/readyz").status_code == 200)
        gate = InferenceGate(live.server.itm_app.state.itm)
        gates.append(gate)
        return live, gate

    yield factory
    for gate in gates:  # before live_factory stops the servers, which drain in-flight frames
        gate.release.set()


def hello(width: int = W, height: int = H, **fields: Any) -> str:
    return json.dumps(
        {"type": "hello", "width": width, "height": height, "input": "rgb24", "output": "rgb10a2", **fields}
    )


@contextmanager
def stream(live: LiveServer, **fields: Any) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    with connect(f"{live.ws_url}/v1/stream", max_size=None, compression=None, open_timeout=30) as ws:
        ws.send(hello(**fields))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready", ready
        yield ws, ready


def frame(seq: int, height: int = H, width: int = W) -> bytes:
    pixels = np.random.default_rng(seq).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return FRAME_HEADER.pack(seq, 0, 0) + pixels.tobytes()


def dropped(reason: str) -> dict[str, str]:
    """Labels of ``itm_frames_dropped_total`` for this module's streams."""
    return {"endpoint": "stream", "operator": "bt2446a", "reason": reason}


def seq_of(message: bytes) -> int:
    seq: int = RESULT_HEADER.unpack_from(message)[0]
    return seq


def fill(live: LiveServer, gate: InferenceGate, ws: ClientConnection) -> None:
    """Send frames 0, 1, 2 one at a time: two end up held on the workers, the third fills the queue of 1."""
    ws.send(frame(0))
    live.wait_for(lambda: gate.entered == 1)
    ws.send(frame(1))
    live.wait_for(lambda: gate.entered == 2)
    ws.send(frame(2))
    live.wait_for(lambda: gate.queued == 1)


def drain(ws: ClientConnection) -> tuple[list[int], list[dict[str, Any]], int]:
    """Send bye, answer each result with a credit, and collect results and drops until the server closes."""
    ws.send(json.dumps({"type": "bye"}))
    results: list[int] = []
    drops: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                results.append(seq_of(message))
                with contextlib.suppress(ConnectionClosed):  # the close may already be here; read on
                    ws.send(json.dumps({"type": "credit", "n": 1}))
            else:
                drops.append(json.loads(message))
    assert closed.value.rcvd is not None
    return results, drops, closed.value.rcvd.code


def test_live_streams_drop_stale_and_overloaded_frames_and_report_each(gated: Callable[..., Any]) -> None:
    live, gate = gated()
    with (
        # Deadlines far beyond the test: only the queue decides what is dropped (test_deadline.py tests them).
        stream(live, mode="live", credits=3, deadline_ms=60_000) as (first, _),
        stream(live, mode="live", credits=2, deadline_ms=60_000) as (second, _),
    ):
        fill(live, gate, first)  # the first stream's three credits are all in conversion
        # More frames for the first stream wait in its one-frame slot: each newer one replaces the last.
        for seq in range(3, 13):
            first.send(frame(seq))
        stale = [json.loads(first.recv(timeout=30)) for _ in range(9)]
        assert stale == [{"type": "drop", "seq": seq, "reason": "stale"} for seq in range(3, 12)]
        # The second stream holds free credits, but the inference queue is full: refused, not queued.
        for seq in range(5):
            second.send(frame(seq))
        overloaded = [json.loads(second.recv(timeout=30)) for _ in range(5)]
        assert overloaded == [{"type": "drop", "seq": seq, "reason": "overloaded"} for seq in range(5)]
        assert httpx.get(f"{live.url}/healthz").status_code == 200
        assert live.sample("itm_frames_dropped_total", dropped("stale")) == 9
        assert live.sample("itm_frames_dropped_total", dropped("overloaded")) == 5

        gate.release.set()
        live.wait_for(lambda: gate.entered == 3 and gate.queued == 0)
        second.send(frame(5))  # capacity is back: the same stream is served again
        assert drain(second) == ([5], [], 1000)
        # The first stream's next credit starts its waiting frame: the newest one won the slot.
        assert drain(first) == ([0, 1, 2, 12], [], 1000)
    assert live.sample("itm_frames_dropped_total", dropped("stale")) == 9
    assert live.sample("itm_frames_dropped_total", dropped("overloaded")) == 5


def test_lossless_stream_blocks_the_sender_and_delivers_every_frame_in_order(
    gated: Callable[..., Any],
) -> None:
    # 1080p frames, so that what the server does not read (frames beyond 2 workers + queue of 1 + 16 pending
    # + the one the reader holds) is far larger than what loopback socket buffers can absorb (~36 MB here).
    height, width, credits, total = 1080, 1920, 16, 32
    live, gate = gated(stream_max_credits=credits)
    payloads = [frame(seq, height, width) for seq in range(total)]
    sent = 0

    def sender(ws: ClientConnection) -> None:
        nonlocal sent
        for payload in payloads:  # within the protocol's window: credits + max_pending = 32
            ws.send(payload)
            sent += 1

    with stream(live, width=width, height=height, mode="lossless", credits=credits) as (ws, ready):
        assert ready["max_pending"] == credits
        thread = threading.Thread(target=sender, args=(ws,), daemon=True)
        thread.start()
        live.wait_for(lambda: gate.entered == 2 and gate.queued == 1)
        # Wait until the sender stops making progress: the server stopped reading, so TCP blocks its send.
        progress = -1
        while progress != sent:
            progress = sent
            thread.join(1.0)
        assert thread.is_alive() and sent < total, f"the server read all {total} frames without room for them"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)  # nothing converted, nothing dropped while inference is held
        gate.release.set()
        received: list[int] = []
        while len(received) < total:
            message = ws.recv(timeout=30)
            assert isinstance(message, bytes), message  # a lossless stream never gets a drop report
            assert len(message) == RESULT_HEADER.size + ready["result_bytes"]
            received.append(seq_of(message))
            ws.send(json.dumps({"type": "credit", "n": 1}))
        thread.join(30)
        assert received == list(range(total))
    assert sum(live.sample("itm_frames_dropped_total", dropped(r)) for r in ("stale", "overloaded")) == 0


def png(height: int = H, width: int = W) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["status"] == 503 and body["detail"]


def test_images_with_the_inference_queue_full_get_503_with_retry_after(gated: Callable[..., Any]) -> None:
    live, gate = gated()
    with (
        stream(live, mode="lossless", credits=3) as (ws, _),
        httpx.Client(base_url=live.url, timeout=30) as http,
    ):
        fill(live, gate, ws)
        with ThreadPoolExecutor(8) as pool:
            refused = list(pool.map(lambda _: http.post("/v1/images", content=png()), range(8)))
        for response in refused:
            assert_overloaded(response)
        assert http.get("/healthz").status_code == 200
        gate.release.set()
        assert [seq_of(ws.recv(timeout=30)) for _ in range(3)] == [0, 1, 2]
        accepted = http.post("/v1/images", content=png())  # capacity is back
        assert accepted.status_code == 200 and accepted.headers["content-type"] == "image/png"
    assert not any((live.settings.data_dir / "tmp").iterdir())  # refused uploads left no files


def make_clip(path: Path, frames: int = 4) -> bytes:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            image.pts, image.time_base = i, Fraction(1, 25)
            for packet in video.encode(image):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path.read_bytes()


def wait_final(http: httpx.Client, live: LiveServer, location: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def final() -> bool:
        seen.append(http.get(location).json())
        return seen[-1]["state"] not in ("queued", "running")

    live.wait_for(final)
    return seen[-1]


def test_uploads_beyond_job_queue_size_get_503_with_retry_after(
    gated: Callable[..., Any], tmp_path: Path
) -> None:
    live, gate = gated(job_concurrency=1, job_queue_size=1)
    clip = make_clip(tmp_path / "in.mp4")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        running = http.post("/v1/jobs", params={"preset": "ultrafast"}, content=clip)
        assert running.status_code == 202
        live.wait_for(lambda: gate.entered >= 1)  # its frames are held on a worker: it stays running
        queued = http.post("/v1/jobs", params={"preset": "ultrafast"}, content=clip)
        assert queued.status_code == 202 and queued.json()["state"] == "queued"
        for _ in range(3):
            assert_overloaded(http.post("/v1/jobs", params={"preset": "ultrafast"}, content=clip))
        assert len(http.get("/v1/jobs").json()["items"]) == 2  # nothing was created for the refused ones
        assert http.get("/healthz").status_code == 200
        gate.release.set()
        for response in (running, queued):
            assert wait_final(http, live, response.headers["location"])["state"] == "succeeded"
        again = http.post("/v1/jobs", params={"preset": "ultrafast"}, content=clip)
        assert again.status_code == 202  # room again once the queue drained
        assert wait_final(http, live, again.headers["location"])["state"] == "succeeded"
    assert not any((live.settings.data_dir / "tmp").iterdir())


def test_concurrent_uploads_cannot_overfill_the_job_queue(gated: Callable[..., Any], tmp_path: Path) -> None:
    live, gate = gated(job_concurrency=1, job_queue_size=1)
    clip = make_clip(tmp_path / "in.mp4")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.post("/v1/jobs", params={"preset": "ultrafast"}, content=clip).status_code == 202
        live.wait_for(lambda: gate.entered >= 1)
        # Four uploads whose headers all arrive before any body is complete: admission must still count them.
        barrier = threading.Barrier(4)

        def body() -> Iterator[bytes]:
            yield clip[:100]
            barrier.wait(20)
            yield clip[100:]

        with ThreadPoolExecutor(4) as pool:
            statuses = sorted(pool.map(lambda _: http.post("/v1/jobs", content=body()).status_code, range(4)))
        gate.release.set()
    assert statuses.count(202) == 1, statuses  # one queue slot: one accepted, the rest 503


def test_streams_beyond_max_streams_close_1013_while_admitted_ones_finish(gated: Callable[..., Any]) -> None:
    live, gate = gated(max_streams=2)
    with (
        stream(live, mode="lossless", credits=3) as (first, _),
        stream(live, mode="live", credits=1) as (second, _),
    ):
        second.send(frame(0))
        live.wait_for(lambda: gate.entered == 1)
        first.send(frame(0))
        live.wait_for(lambda: gate.entered == 2)
        first.send(frame(1))
        live.wait_for(lambda: gate.queued == 1)  # both workers held, queue full: the server is saturated
        for _ in range(4):
            with connect(f"{live.ws_url}/v1/stream", open_timeout=30) as extra:
                with pytest.raises(ConnectionClosed) as closed:
                    extra.send(hello())
                    extra.recv(timeout=30)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013 and "too many streams" in closed.value.rcvd.reason
        assert httpx.get(f"{live.url}/healthz").status_code == 200
        gate.release.set()
        assert drain(first) == ([0, 1], [], 1000)
        assert drain(second) == ([0], [], 1000)
    live.wait_for(lambda: live.sample("itm_active_streams") == 0)
    with stream(live) as (_, ready):  # the slots are free again
        assert ready["type"] == "ready"


def test_frames_of_other_requests_are_served_in_arrival_order(gated: Callable[..., Any]) -> None:
    live, gate = gated(queue_size=16)
    with (
        stream(live, mode="lossless", credits=8) as (ws, _),
        httpx.Client(base_url=live.url, timeout=30) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        fill(live, gate, ws)  # frames 0, 1 held on the workers, frame 2 queued
        image = pool.submit(http.post, "/v1/images", content=png())
        live.wait_for(lambda: gate.queued == 2)  # the image's frame arrived after frame 2
        for seq in range(3, 8):
            ws.send(frame(seq))
        live.wait_for(lambda: gate.queued == 7)  # and before frames 3-7
        gate.release.set()
        assert image.result().status_code == 200
        assert [seq_of(ws.recv(timeout=30)) for _ in range(8)] == list(range(8))
    # Two held frames, then the queue in arrival order: frame 2, the image, frames 3-7.
    assert gate.outputs.index("nits") == 3, gate.outputs


def test_a_stream_waiting_for_its_results_is_not_idle(gated: Callable[..., Any]) -> None:
    live, gate = gated(stream_idle_timeout_s=0.5)
    with stream(live, mode="lossless", credits=3) as (ws, _):
        fill(live, gate, ws)
        ws.send(frame(3))  # waits for a queue slot in the stream's FIFO
        # The client has said everything; the server is the one that is behind. Wait out the idle timeout.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)
        gate.release.set()
        assert drain(ws) == ([0, 1, 2, 3], [], 1000)


def test_a_burst_of_images_beyond_what_the_server_holds_is_refused_at_once(gated: Callable[..., Any]) -> None:
    """Queue 4 + 2 workers: six stills are admitted and wait; the other four get 503 without waiting."""
    live, gate = gated(queue_size=4)
    with httpx.Client(base_url=live.url, timeout=60) as http, ThreadPoolExecutor(10) as pool:
        # One at a time onto the workers, then four into the queue: sent at once, the six could arrive within
        # one batching delay and the fifth would find the queue full before a worker took the first.
        admitted = []
        for held in (1, 2):
            admitted.append(pool.submit(http.post, "/v1/images", content=png()))
            live.wait_for(lambda held=held: gate.entered == held)
        admitted += [pool.submit(http.post, "/v1/images", content=png()) for _ in range(4)]
        live.wait_for(lambda: gate.queued == 4 and live.server.itm_app.state.itm.stills_in_flight == 6)
        # Answered while the gate still holds the admitted ones: refused at once, not after them.
        refused = list(pool.map(lambda _: http.post("/v1/images", content=png()), range(4)))
        for response in refused:
            assert_overloaded(response)
        gate.release.set()
        assert [future.result().status_code for future in admitted] == [200] * 6
    assert live.server.itm_app.state.itm.stills_in_flight == 0
    assert not any((live.settings.data_dir / "tmp").iterdir())
