"""Slow and vanishing WebSocket clients must not make the server grow: memory, streams and open files
return to their baseline once those clients are gone.

These are resource checks, not timing checks: the server process's VmRSS (/proc/<pid>/status), its open
file descriptors (/proc/<pid>/fd) and ``itm_active_streams`` are compared with a baseline taken after a
warm-up (allocator arenas, kernel caches and lazily built objects exist by then), waiting up to a deadline
for each to settle. Tolerances: RSS within ``RSS_TOLERANCE_KIB`` of the baseline (a malloc arena may keep a
few freed pages), open files within ``FD_TOLERANCE`` (an HTTP keep-alive socket of the metrics scrape).
"""

import json
from collections.abc import Callable

import numpy as np
import pytest

from clients import Stream, StreamOptions, StreamResult
from tests.faults.conftest import RawWebSocket, ServerProcess, wait_until

pytestmark = pytest.mark.timeout(180)

RSS_TOLERANCE_KIB = 16 * 1024
FD_TOLERANCE = 2
VANISHING = 50
SLOW_CLIENTS = 5
SLOW_FRAMES = 24

BIG_W, BIG_H = 640, 360
"""Slow client frames: 16 unread rgb48 results (1.4 MB each) overflow every socket buffer on the way."""
SMALL_W, SMALL_H = 64, 48


def _hello(width: int, height: int, credits: int, mode: str) -> str:
    return json.dumps(
        {
            "type": "hello",
            "width": width,
            "height": height,
            "input": "rgb24",
            "output": "rgb48",
            "mode": mode,
            "operator": "bt2408",
            "credits": credits,
        }
    )


def _frame(seq: int, width: int, height: int) -> bytes:
    header = np.array([seq], "<u4").tobytes() + bytes(4) + np.array([seq], "<u8").tobytes()
    return header + np.full(width * height * 3, seq % 256, np.uint8).tobytes()


def _slow_client(server: ServerProcess, frames: int) -> RawWebSocket:
    """Grant the most credits allowed, send ``frames`` big frames, never read a result; left connected."""
    client = RawWebSocket(server.ws_url)
    client.send(_hello(BIG_W, BIG_H, credits=16, mode="live"))
    assert json.loads(client.recv_text())["type"] == "ready"
    for seq in range(frames):
        client.send(_frame(seq, BIG_W, BIG_H))
    return client


def _vanishing_client(server: ServerProcess) -> None:
    """Connect, say hello, send frames, and drop the connection with a reset: no bye, no close frame."""
    client = RawWebSocket(server.ws_url)
    client.send(_hello(SMALL_W, SMALL_H, credits=4, mode="lossless"))
    assert json.loads(client.recv_text())["type"] == "ready"
    for seq in range(6):
        client.send(_frame(seq, SMALL_W, SMALL_H))
    client.vanish()


def _settled(server: ServerProcess, rss_kib: int, fds: int) -> bool:
    return (
        server.metric("itm_active_streams") == 0
        and server.open_fds() <= fds + FD_TOLERANCE
        and server.rss_kib() <= rss_kib + RSS_TOLERANCE_KIB
    )


def _state(server: ServerProcess) -> str:
    return (
        f"rss {server.rss_kib()} KiB, fds {server.open_fds()}, "
        f"active streams {server.metric('itm_active_streams'):g}"
    )


def _baseline(server: ServerProcess) -> tuple[int, int]:
    wait_until(lambda: server.metric("itm_active_streams") == 0, 30, "the warm-up streams to end")
    return server.rss_kib(), server.open_fds()


def _assert_settled(server: ServerProcess, rss: int, fds: int, what: str) -> None:
    try:
        wait_until(lambda: _settled(server, rss, fds), 10, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: baseline rss {rss} KiB, fds {fds}; now {_state(server)}") from None


def _assert_streams_work(server: ServerProcess) -> None:
    with Stream.connect(server.url, StreamOptions(SMALL_W, SMALL_H, operator="bt2408")) as again:
        frames = [np.zeros((SMALL_H, SMALL_W, 3), np.uint8)] * 3
        assert [e.seq for e in again.run(frames) if isinstance(e, StreamResult)] == [0, 1, 2]


def test_clients_that_never_read_do_not_grow_memory(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(workers=1)
    _slow_client(server, SLOW_FRAMES).vanish()  # warm-up: the allocator's high-water mark for one client
    rss, fds = _baseline(server)
    unread_kib = 16 * (BIG_W * BIG_H * 6 + BIG_W * BIG_H * 3) // 1024
    for _ in range(SLOW_CLIENTS):
        slow = _slow_client(server, SLOW_FRAMES)
        during = server.rss_kib()
        assert during - rss <= unread_kib + RSS_TOLERANCE_KIB, (
            f"RSS grew {during - rss} KiB for a client that never reads (bound {unread_kib} KiB + tolerance)"
        )
        assert server.metric("itm_active_streams") == 1
        slow.vanish()
    _assert_settled(server, rss, fds, "the slow clients' resources to be freed")
    _assert_streams_work(server)


def test_vanishing_clients_leave_no_memory_streams_or_files_behind(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(workers=1)
    for _ in range(5):  # warm-up
        _vanishing_client(server)
    rss, fds = _baseline(server)
    for _ in range(VANISHING):
        _vanishing_client(server)
    _assert_settled(server, rss, fds, "vanished clients' resources to be freed")
    _assert_streams_work(server)
