import json

import numpy as np
import pytest

from clients import ClientError, StreamOptions, stream_url, unpack_rgb10a2
from clients.protocol import CreditWindow, Ready, encode_frame, frame_payload, parse_result


def ready(mode: str = "lossless", credits: int = 2, max_credits: int = 4, max_pending: int = 3) -> Ready:
    return Ready.from_json(
        {
            "type": "ready",
            "version": 1,
            "session": "s",
            "width": 2,
            "height": 1,
            "input": "rgb24",
            "output": "rgb10a2",
            "mode": mode,
            "operator": "bt2446a",
            "credits": credits,
            "max_credits": max_credits,
            "max_pending": max_pending,
            "frame_bytes": 6,
            "result_bytes": 8,
            "idle_timeout_s": 30.0,
        }
    )


def test_hello_carries_only_set_fields() -> None:
    hello = json.loads(StreamOptions(64, 48, mode="live", credits=3).hello())
    assert hello == {
        "type": "hello",
        "version": 1,
        "width": 64,
        "height": 48,
        "input": "rgb24",
        "output": "rgb48",
        "mode": "live",
        "colour": "srgb",
        "credits": 3,
    }
    assert json.loads(StreamOptions(16, 16, operator="bt2408", peak_nits=600).hello())["peak_nits"] == 600


def test_lossless_window_is_credits_plus_max_pending() -> None:
    window = CreditWindow(ready(credits=2, max_pending=3))
    for _ in range(5):
        assert window.can_send()
        window.take_seq()
    assert not window.can_send()
    assert window.on_result() == 1  # one credit back per result keeps the grant at the hello's level
    assert window.outstanding == 2
    assert window.can_send()


def test_unpaced_live_sender_keeps_one_waiting_slot() -> None:
    window = CreditWindow(ready(mode="live", credits=1))
    window.take_seq()
    window.take_seq()
    assert not window.can_send()
    assert window.can_send(paced=True)
    window.on_drop()
    assert window.can_send()


def test_grant_never_exceeds_max_credits_and_result_needs_a_credit() -> None:
    window = CreditWindow(ready(credits=4, max_credits=4))
    for _ in range(4):
        window.take_seq()
    assert [window.on_result() for _ in range(4)] == [1, 1, 1, 1]
    assert window.outstanding == 4
    window.outstanding = 0
    with pytest.raises(ClientError, match="without a credit"):
        window.on_result()


def test_result_parsing_and_rgb10a2_unpacking() -> None:
    r = ready()
    words = np.array([[1 | (2 << 10) | (1023 << 20) | (3 << 30), 512 << 10]], "<u4")
    from clients.protocol import RESULT_HEADER

    message = RESULT_HEADER.pack(7, 0, 100, 1, 2, 5, 9) + words.tobytes()
    result = parse_result(message, r, received_at_us=400)
    assert (result.seq, result.latency_s, result.server_s, result.infer_s) == (7, 300e-6, 8e-6, 3e-6)
    assert result.pixels().tolist() == [[[1, 2, 1023], [0, 512, 0]]]
    assert unpack_rgb10a2(words.tobytes(), 1, 2).dtype == np.uint16
    with pytest.raises(ClientError, match="expected 8"):
        parse_result(message[:-1], r, 0)


def test_frame_encoding() -> None:
    frame = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    message = encode_frame(5, frame_payload(frame, "rgb24"), client_ts=42)
    assert message[:16] == (5).to_bytes(4, "little") + bytes(4) + (42).to_bytes(8, "little")
    assert message[16:] == frame.tobytes()
    with pytest.raises(ClientError, match="H x W x 4"):
        frame_payload(frame, "rgba")


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://h:1", "ws://h:1/v1/stream"),
        ("https://h/api/", "wss://h/api/v1/stream"),
        ("ws://h:2/v1/stream", "ws://h:2/v1/stream"),
    ],
)
def test_stream_url(base: str, expected: str) -> None:
    assert stream_url(base) == expected


def test_ready_rejects_other_versions() -> None:
    with pytest.raises(ClientError, match="v2"):
        Ready.from_json({"type": "ready", "version": 2})
