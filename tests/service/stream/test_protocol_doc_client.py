"""A client written from docs/PROTOCOL.md alone: the ``websockets`` library, ``struct``, ``json`` and NumPy.

Nothing is imported from ``clients/`` or ``service/``: every constant below is copied from the document, so
if this client needs anything the document does not say, the document is incomplete. It checks protocol
behaviour (sizes, order, credits, drops, the close sequence, close codes), never pixel values, so it holds
whatever model the ``mqn`` operator loads.
"""

import json
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from tests.service.conftest import LiveServer

pytestmark = pytest.mark.timeout(300)

FRAME_HEADER = struct.Struct("<IIQ")
"""§4 Frame: seq u32, flags u32, client_ts u64, little-endian."""
RESULT_HEADER = struct.Struct("<IIQQQQQ")
"""§4 Result: seq, flags, client_ts, received_us, infer_start_us, infer_end_us, sent_us."""
BYTES_PER_PIXEL = {"rgb10a2": 4, "rgb48": 6}
"""§6."""
W720, H720 = 1280, 720


@dataclass
class DocClient:
    """One stream as §1-§7 describe it: credits back per result, count answers, then the close sequence."""

    ws: ClientConnection
    ready: dict[str, Any]
    sent: list[int] = field(default_factory=list)
    results: list[tuple[int, ...]] = field(default_factory=list)
    drops: list[dict[str, Any]] = field(default_factory=list)
    last_credit_delay_s: float = 0.0
    """Pause before the credit for the last result, as a slow consumer would: a premature close shows."""

    @property
    def unanswered(self) -> int:
        return len(self.sent) - len(self.results) - len(self.drops)

    def send_frame(self, seq: int, pixels: np.ndarray) -> None:
        self.ws.send(FRAME_HEADER.pack(seq, 0, seq * 1000) + pixels.tobytes())
        self.sent.append(seq)

    def receive_one(self) -> None:
        """Read one message; answer a result with one credit (§5)."""
        message = self.ws.recv(timeout=120)
        if isinstance(message, bytes):
            assert len(message) == RESULT_HEADER.size + self.ready["result_bytes"]
            header = RESULT_HEADER.unpack_from(message)
            self.results.append(header)
            words = np.frombuffer(message, "<u4", offset=RESULT_HEADER.size)
            if self.ready["output"] == "rgb10a2":
                assert words.size == self.ready["width"] * self.ready["height"]
                assert np.all(words >> 30 == 3), "§6: alpha bits are 3 (opaque)"
            if self.unanswered == 0 and self.last_credit_delay_s:
                time.sleep(self.last_credit_delay_s)
            self.ws.send(json.dumps({"type": "credit", "n": 1}))  # must never hit a closed socket
        else:
            report = json.loads(message)
            assert report["type"] == "drop", report
            self.drops.append(report)

    def finish(self, client_closes: bool) -> tuple[int, str]:
        """§7: bye, read until every frame is answered, then close (or wait for the server's close)."""
        self.ws.send(json.dumps({"type": "bye"}))
        while self.unanswered:
            self.receive_one()
        if client_closes:
            self.ws.close(1000)
            assert self.ws.protocol.close_rcvd is not None, "the server answers the client's close"
            return self.ws.protocol.close_rcvd.code, self.ws.protocol.close_rcvd.reason
        with pytest.raises(ConnectionClosed) as closed:
            self.ws.recv(timeout=60)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code, closed.value.rcvd.reason


@contextmanager
def doc_stream(url: str, hello: dict[str, Any], **options: Any) -> Iterator[DocClient]:
    """Connect (§1), send the hello (§2), read ``ready`` (§3)."""
    # §1: a result is 48 + result_bytes long; websockets' default max_size (1 MiB) would close with 1009.
    result_bytes = hello["width"] * hello["height"] * BYTES_PER_PIXEL[hello["output"]]
    options.setdefault("max_size", RESULT_HEADER.size + result_bytes)
    with connect(f"{url}/v1/stream", compression=None, open_timeout=60, **options) as ws:
        ws.send(json.dumps(hello))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready", ready
        assert ready["result_header_bytes"] == RESULT_HEADER.size == 48
        assert ready["frame_header_bytes"] == FRAME_HEADER.size == 16
        assert ready["result_bytes"] == result_bytes
        yield DocClient(ws, ready)


def pixels(seq: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seq).integers(0, 256, (height, width, 3), dtype=np.uint8)


def hello(width: int = 64, height: int = 48, **fields: Any) -> dict[str, Any]:
    base = {"type": "hello", "width": width, "height": height, "input": "rgb24", "output": "rgb10a2"}
    return {**base, **fields}


def check_results(client: DocClient, seqs: list[int]) -> None:
    """§4: results in seq order, client_ts echoed, flags 0, server times ordered."""
    assert [r[0] for r in client.results] == seqs
    for seq, flags, client_ts, received, start, end, sent in client.results:
        assert (flags, client_ts) == (0, seq * 1000)
        assert received <= start <= end <= sent


@pytest.mark.parametrize("client_closes", [False, True], ids=["server-closes", "client-closes"])
@pytest.mark.parametrize("operator_mode", ["fast", "quality"])
def test_mqn_720p_rgb10a2_lossless(live: LiveServer, operator_mode: str, client_closes: bool) -> None:
    frames = 4 if operator_mode == "fast" else 2
    request = hello(W720, H720, mode="lossless", operator="mqn", operator_mode=operator_mode, credits=2)
    with doc_stream(live.ws_url, request) as client:
        client.last_credit_delay_s = 0.3
        assert client.ready["operator"] == "mqn"
        assert client.ready["operator_params"]["mode"] == operator_mode
        assert client.ready["frame_bytes"] == W720 * H720 * 3
        for seq in range(frames):  # credits 2 + max_pending 16: every frame may go at once (§5)
            client.send_frame(seq, pixels(seq, H720, W720))
        code, reason = client.finish(client_closes)
    check_results(client, list(range(frames)))
    assert client.drops == []  # lossless: nothing is ever dropped
    assert code == 1000 and (client_closes or reason == "bye")


@pytest.mark.parametrize("operator_mode", ["fast", "quality"])
def test_mqn_720p_rgb10a2_live_paced(live: LiveServer, operator_mode: str) -> None:
    """Live mode, one frame per result as a paced player would: every frame gets a result or a drop report."""
    frames = 3 if operator_mode == "fast" else 2
    request = hello(
        W720, H720, mode="live", operator="mqn", operator_mode=operator_mode, credits=1, deadline_ms=60_000
    )
    with doc_stream(live.ws_url, request) as client:
        assert client.ready["deadline_ms"] == 60_000
        for seq in range(frames):
            client.send_frame(seq, pixels(seq, H720, W720))
            client.receive_one()
        code, reason = client.finish(client_closes=False)
    check_results(client, list(range(frames)))
    assert (code, reason) == (1000, "bye")


def test_default_max_size_is_too_small_for_a_720p_result(live: LiveServer) -> None:
    """§1 is right to warn: with websockets' default 1 MiB limit the first 720p result closes with 1009."""
    request = hello(W720, H720, operator="bt2408", mode="lossless")
    with doc_stream(live.ws_url, request, max_size=2**20) as client:
        client.send_frame(0, pixels(0, H720, W720))
        with pytest.raises(ConnectionClosedError) as closed:
            client.ws.recv(timeout=60)
    assert closed.value.sent is not None and closed.value.sent.code == 1009


def test_bye_with_nothing_unanswered_closes_at_once(live: LiveServer) -> None:
    with doc_stream(live.ws_url, hello(credits=3)) as client:
        started = time.perf_counter()
        assert client.finish(client_closes=False) == (1000, "bye")
    assert time.perf_counter() - started < 5


def test_server_waits_for_the_credit_of_the_last_result_before_closing(live: LiveServer) -> None:
    """§7: a client returning one credit per result is never closed before its last credit arrives."""
    with doc_stream(live.ws_url, hello(operator="bt2408", mode="lossless", credits=4)) as client:
        client.last_credit_delay_s = 1.0
        for seq in range(6):
            client.send_frame(seq, pixels(seq, 48, 64))
        assert client.finish(client_closes=False) == (1000, "bye")
    check_results(client, list(range(6)))


@pytest.mark.parametrize(
    ("first", "code", "reason"),
    [
        ("hello, server", 1003, "not JSON"),
        (b"\x00" * 16, 1003, "expected a JSON hello"),
        ("[" * 100_000, 1003, "nested too deeply"),
        ("[1, 2]", 1008, "hello"),
        (json.dumps(hello(width=8)), 1008, "hello.width"),
        (json.dumps(hello(mode="lossless", deadline_ms=100)), 1008, "hello.deadline_ms"),
    ],
    ids=["not-json", "binary", "json-too-deep", "json-not-object", "width-too-small", "lossless-deadline"],
)
def test_bad_hello_close_codes_follow_section_7(
    live: LiveServer, first: str | bytes, code: int, reason: str
) -> None:
    with connect(f"{live.ws_url}/v1/stream", compression=None, open_timeout=60) as ws:
        ws.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code and reason in closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [("hello, server", 1003, "not JSON"), ('{"type": "frame"}', 1008, "unknown message type")],
)
def test_text_after_the_hello_gets_the_same_codes(
    live: LiveServer, message: str, code: int, reason: str
) -> None:
    with doc_stream(live.ws_url, hello()) as client:
        client.ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            client.ws.recv(timeout=60)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code and reason in closed.value.rcvd.reason
