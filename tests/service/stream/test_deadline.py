"""Live frames have a deadline (docs/PROTOCOL.md §5); lossless frames never do.

Inference is held behind the overload tests' :class:`InferenceGate`, so whether a frame is still queued never
depends on timing: with two workers held, the third frame of a stream waits in the batcher queue for as long
as the test wants.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.service.conftest import LiveServer
from tests.service.test_overload import InferenceGate

pytestmark = pytest.mark.timeout(60)

H, W = 24, 32


def frame(seq: int) -> bytes:
    pixels = np.random.default_rng(seq).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return seq.to_bytes(4, "little") + bytes(4) + bytes(8) + pixels.tobytes()


def dropped(live: LiveServer, reason: str) -> float:
    labels = {"endpoint": "stream", "operator": "bt2446a", "reason": reason}
    return live.sample("itm_frames_dropped_total", labels)


@pytest.fixture
def gated(live_factory: Callable[..., LiveServer]) -> Iterator[tuple[LiveServer, InferenceGate]]:
    """A ready server with 2 workers and a queue of 8, its inference held until the gate is released."""
    live = live_factory(queue_size=8)
    live.wait_for(lambda: httpx.get(f"{live.url}/readyz").status_code == 200)
    gate = InferenceGate(live.server.itm_app.state.itm)
    yield live, gate
    gate.release.set()


@contextmanager
def stream(live: LiveServer, **fields: Any) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    hello = {"type": "hello", "width": W, "height": H, "input": "rgb24", "output": "rgb10a2", **fields}
    with connect(f"{live.ws_url}/v1/stream", max_size=None, compression=None, open_timeout=30) as ws:
        ws.send(json.dumps(hello))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready", ready
        yield ws, ready


def hold_two_queue_one(live: LiveServer, gate: InferenceGate, ws: ClientConnection) -> float:
    """Frames 0 and 1 held on the workers, frame 2 in the batcher queue; returns when frame 2 was sent."""
    ws.send(frame(0))
    live.wait_for(lambda: gate.entered == 1)
    ws.send(frame(1))
    live.wait_for(lambda: gate.entered == 2)
    sent = time.perf_counter()
    ws.send(frame(2))
    return sent


def results_until_closed(ws: ClientConnection) -> list[int]:
    """Bye, then one credit per result until the server closes (§7); the seqs of the results."""
    ws.send(json.dumps({"type": "bye"}))
    seqs: list[int] = []
    while True:
        try:
            message = ws.recv(timeout=30)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1000, closed
            return seqs
        assert isinstance(message, bytes), message
        seqs.append(int.from_bytes(message[:4], "little"))
        ws.send(json.dumps({"type": "credit", "n": 1}))


def test_queued_live_frame_is_dropped_at_its_deadline_while_workers_are_busy(
    gated: tuple[LiveServer, InferenceGate],
) -> None:
    live, gate = gated
    with stream(live, mode="live", credits=3, deadline_ms=200) as (ws, ready):
        assert ready["deadline_ms"] == 200
        sent = hold_two_queue_one(live, gate, ws)
        report = json.loads(ws.recv(timeout=10))  # arrives while inference is still held
        waited = time.perf_counter() - sent
        assert report == {"type": "drop", "seq": 2, "reason": "deadline"}
        assert waited >= 0.2
        assert gate.entered == 2 and gate.queued == 0  # it never reached a worker and left the queue
        assert dropped(live, "deadline") == 1
        gate.release.set()
        assert results_until_closed(ws) == [0, 1]  # frames whose conversion started are always finished


def test_default_deadline_drops_a_queued_live_frame_within_two_seconds(
    gated: tuple[LiveServer, InferenceGate],
) -> None:
    live, gate = gated
    with stream(live, mode="live", credits=3) as (ws, ready):
        assert ready["deadline_ms"] is None
        sent = hold_two_queue_one(live, gate, ws)
        report = json.loads(ws.recv(timeout=10))
        waited = time.perf_counter() - sent
        assert report == {"type": "drop", "seq": 2, "reason": "deadline"}
        assert 0.1 <= waited < 2.0 + 0.5  # 100 ms … 2 s, plus slack for a busy machine
        gate.release.set()
        assert results_until_closed(ws) == [0, 1]


def test_lossless_frames_are_never_dropped_however_long_they_wait(
    gated: tuple[LiveServer, InferenceGate],
) -> None:
    live, gate = gated
    with stream(live, mode="lossless", credits=3) as (ws, ready):
        assert ready["deadline_ms"] is None
        hold_two_queue_one(live, gate, ws)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)  # longer than any live deadline: still nothing dropped
        assert gate.queued == 1
        gate.release.set()
        assert results_until_closed(ws) == [0, 1, 2]
    assert dropped(live, "deadline") == 0


def test_live_frame_waiting_for_a_credit_past_its_deadline_is_dropped_when_the_credit_comes(
    live: LiveServer,
) -> None:
    with stream(live, mode="live", credits=1, deadline_ms=50) as (ws, _):
        ws.send(frame(0))
        assert isinstance(ws.recv(timeout=30), bytes)  # result 0 spent the only credit
        ws.send(frame(1))  # waits in the one-frame slot for a credit
        time.sleep(0.3)
        ws.send(json.dumps({"type": "credit", "n": 1}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "drop", "seq": 1, "reason": "deadline"}
        ws.send(frame(2))  # the credit was not spent: the next frame uses it at once
        message = ws.recv(timeout=30)
        assert isinstance(message, bytes) and int.from_bytes(message[:4], "little") == 2
    assert dropped(live, "deadline") == 1
