"""The WebSocket frame stream over real sockets, against docs/PROTOCOL.md."""

import contextlib
import io
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from service.colour.description import ColourDescription
from service.colour.packing import pack_rgb10a2, pack_rgb48
from service.operators import create_operator

FRAME = struct.Struct("<IIQ")
RESULT = struct.Struct("<IIQQQQQ")
H, W = 24, 32
DROPPED_STALE = {"endpoint": "stream", "operator": "bt2446a", "reason": "stale"}


def frame_pixels(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def hello(**fields: Any) -> str:
    base = {"type": "hello", "width": W, "height": H, "input": "rgb24", "output": "rgb10a2", "credits": 2}
    base.update(fields)
    return json.dumps(base)


@contextmanager
def open_stream(
    live: Any, headers: dict[str, str] | None = None, **fields: Any
) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    with connect(
        f"{live.ws_url}/v1/stream", additional_headers=headers, max_size=None, open_timeout=30
    ) as ws:
        ws.send(hello(**fields))
        ready = json.loads(ws.recv(timeout=30))
        yield ws, ready


def send_frame(ws: ClientConnection, seq: int, payload: bytes, ts: int = 0) -> None:
    ws.send(FRAME.pack(seq, 0, ts) + payload)


def recv_result(ws: ClientConnection) -> tuple[tuple[int, ...], bytes]:
    message = ws.recv(timeout=30)
    assert isinstance(message, bytes), message
    return RESULT.unpack_from(message), message[RESULT.size :]


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(1000):
            ws.recv(timeout=30)
    rcvd = info.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def expected_rgb10a2(pixels: np.ndarray, operator: str = "bt2446a") -> np.ndarray:
    nits = create_operator(operator, peak_nits=1000.0)(pixels[None], ColourDescription.still())[0]
    return pack_rgb10a2(nits)


def test_ready_echoes_accepted_settings(live: Any) -> None:
    with open_stream(live, mode="lossless", operator="bt2408", peak_nits=600) as (_, ready):
        assert ready["type"] == "ready"
        assert ready["operator"] == "bt2408"
        assert ready["operator_params"] == {"peak_nits": 600.0}
        assert ready["frame_bytes"] == H * W * 3
        assert ready["result_bytes"] == H * W * 4
        assert ready["max_pending"] == ready["max_credits"]


def test_in_order_results_with_correct_pixels_and_timings(live: Any) -> None:
    with open_stream(live, mode="lossless", credits=4) as (ws, _):
        seqs = [3, 5, 6, 10, 11, 20]
        for seq in seqs:
            send_frame(ws, seq, frame_pixels(seq).tobytes(), ts=seq * 1000)
        for seq in seqs:
            header, payload = recv_result(ws)
            ws.send(json.dumps({"type": "credit", "n": 1}))
            got_seq, flags, ts, received, start, end, sent = header
            assert (got_seq, flags, ts) == (seq, 0, seq * 1000)
            assert received <= sent and start <= end <= sent
            packed = np.frombuffer(payload, np.uint32).reshape(H, W)
            np.testing.assert_array_equal(packed, expected_rgb10a2(frame_pixels(seq)))
        ws.send(json.dumps({"type": "bye"}))
        assert closed_with(ws) == (1000, "bye")
    assert live.sample("itm_frames_total", {"endpoint": "stream", "operator": "bt2446a"}) == len(seqs)


@pytest.mark.parametrize("fmt", ["rgba", "bgra", "png", "jpeg"])
def test_input_formats_match_rgb24(live: Any, fmt: str) -> None:
    pixels = frame_pixels(1)
    if fmt == "rgba":
        payload = np.dstack([pixels, np.full((H, W), 7, np.uint8)]).tobytes()
    elif fmt == "bgra":
        payload = np.dstack([pixels[..., ::-1], np.full((H, W), 7, np.uint8)]).tobytes()
    else:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt.upper(), quality=100)
        payload = buffer.getvalue()
        pixels = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
    with open_stream(live, input=fmt, output="rgb48", credits=1) as (ws, _):
        send_frame(ws, 0, payload)
        _, data = recv_result(ws)
    nits = create_operator("bt2446a", peak_nits=1000.0)(pixels[None], ColourDescription.still())[0]
    np.testing.assert_array_equal(np.frombuffer(data, np.uint16).reshape(H, W, 3), pack_rgb48(nits))


def test_credits_are_never_exceeded(live: Any) -> None:
    with open_stream(live, mode="lossless", credits=2) as (ws, _):
        for seq in range(6):
            send_frame(ws, seq, frame_pixels(seq).tobytes())
        assert [recv_result(ws)[0][0] for _ in range(2)] == [0, 1]
        # No credit left: nothing more may arrive, however long we wait.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        ws.send(json.dumps({"type": "credit", "n": 1}))
        assert recv_result(ws)[0][0] == 2
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        ws.send(json.dumps({"type": "credit", "n": 3}))
        assert [recv_result(ws)[0][0] for _ in range(3)] == [3, 4, 5]


def test_live_mode_drops_stale_frames_when_client_is_slow(live: Any) -> None:
    n = 20
    with open_stream(live, mode="live", credits=1) as (ws, _):
        for seq in range(n):
            send_frame(ws, seq, frame_pixels(seq).tobytes())
        results: list[int] = []
        drops: list[int] = []
        while len(results) + len(drops) < n:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                results.append(RESULT.unpack_from(message)[0])
                ws.send(json.dumps({"type": "credit", "n": 1}))
            else:
                report = json.loads(message)
                assert report["type"] == "drop" and report["reason"] == "stale"
                drops.append(report["seq"])
    assert sorted(results + drops) == list(range(n))
    assert results == sorted(results)
    assert results[-1] == n - 1  # latest wins
    assert len(drops) >= n - 3  # one in flight, one waiting: everything else replaced
    assert live.sample("itm_frames_dropped_total", DROPPED_STALE) == len(drops)


def test_lossless_mode_delivers_every_frame(live: Any) -> None:
    n = 40
    with open_stream(live, mode="lossless", credits=4) as (ws, ready):
        received: list[int] = []
        sent = 0
        while len(received) < n:
            # Stay within credits + max_pending as the protocol asks, but push well past the credits.
            while sent < n and sent - len(received) < 4 + ready["max_pending"]:
                send_frame(ws, sent, frame_pixels(sent % 5).tobytes())
                sent += 1
            header, _ = recv_result(ws)
            received.append(header[0])
            ws.send(json.dumps({"type": "credit", "n": 1}))
    assert received == list(range(n))
    assert live.sample("itm_frames_dropped_total", DROPPED_STALE) == 0


def test_too_many_streams_closes_1013(live_factory: Any) -> None:
    live = live_factory(max_streams=1)
    with open_stream(live):
        with connect(f"{live.ws_url}/v1/stream", open_timeout=30) as second:
            code, reason = closed_with(second)
        assert code == 1013 and "too many streams" in reason
    live.wait_for(lambda: live.sample("itm_active_streams") == 0)


def test_operator_whose_model_is_missing_closes_1011(
    live: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A valid hello naming a learned operator that is not installed: the server's failure (1011, one code
    # per error, PROTOCOL.md §7), said so the person reading it knows what is wrong; not a dropped socket.
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path / "no-model"))
    with connect(f"{live.ws_url}/v1/stream", open_timeout=30) as ws:
        ws.send(hello(operator="expandnet"))
        code, reason = closed_with(ws)
    assert code == 1011
    assert reason == "hello.operator: 'expandnet' is not available on this server (its model is not loaded)"
    live.wait_for(lambda: live.sample("itm_active_streams") == 0)
    with open_stream(live, operator="bt2446a") as (_, ready):  # the server itself is fine
        assert ready["type"] == "ready"


def test_idle_timeout_closes(live_factory: Any) -> None:
    live = live_factory(stream_idle_timeout_s=0.3)
    with open_stream(live) as (ws, _):
        code, reason = closed_with(ws)
    assert code == 1001 and "idle" in reason


def test_vanished_client_frees_its_slot(live_factory: Any) -> None:
    live = live_factory(max_streams=1)
    with open_stream(live, mode="lossless", credits=1) as (ws, _):
        for seq in range(5):
            send_frame(ws, seq, frame_pixels(seq).tobytes())
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the client just disappears
        ws.socket.close()
    live.wait_for(lambda: live.sample("itm_active_streams") == 0)
    with open_stream(live) as (_, ready):  # the single slot is free again
        assert ready["type"] == "ready"
    live.wait_for(lambda: live.server.servers and live.sample("itm_queue_depth") == 0)


@pytest.mark.parametrize("auth_on", [False, True])
def test_stream_auth(live_factory: Any, auth_on: bool) -> None:
    live = live_factory(api_keys=("s3cret",) if auth_on else ())
    with connect(f"{live.ws_url}/v1/stream", open_timeout=30) as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may close before the hello is sent
            ws.send(hello())
        if auth_on:
            assert closed_with(ws) == (1008, "unauthorized")
        else:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
    if auth_on:
        with open_stream(live, headers={"Authorization": "Bearer s3cret"}) as (ws, ready):
            assert ready["type"] == "ready"
        with connect(f"{live.ws_url}/v1/stream?access_token=s3cret", open_timeout=30) as ws:
            ws.send(hello())
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"


def test_graceful_shutdown_drains_in_flight_frames(live_factory: Any) -> None:
    live = live_factory()
    with open_stream(live, mode="lossless", credits=4) as (ws, _):
        for seq in range(4):
            send_frame(ws, seq, frame_pixels(seq).tobytes())
        ws.send(json.dumps({"type": "credit", "n": 1}))
        answered: list[int] = []
        # Wait until the server has read every frame (first result proves the stream is live), then stop.
        answered.append(recv_result(ws)[0][0])
        stopper = threading.Thread(target=live.stop)
        stopper.start()
        with pytest.raises(ConnectionClosed) as info:
            while True:
                message = ws.recv(timeout=30)
                if isinstance(message, bytes):
                    answered.append(RESULT.unpack_from(message)[0])
                else:
                    answered.append(json.loads(message)["seq"])  # a frame read during the drain is reported
        stopper.join()
    assert sorted(answered) == [0, 1, 2, 3]
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "server shutting down")
