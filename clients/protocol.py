"""The frame-stream wire format and credit bookkeeping, without any I/O (docs/PROTOCOL.md, v1).

Both stream clients (:mod:`clients.stream`, sync and async) drive one :class:`CreditWindow`, so the
flow-control rules live in exactly one place: grant ``credits`` in the hello, return one credit per result
consumed, never let the outstanding grant pass ``max_credits``, and in ``lossless`` mode never have more
frames unanswered than outstanding credits + ``max_pending`` (beyond that the server stops reading and the
client's own credit messages would queue behind its frames: a self-inflicted stall, §5).
"""

import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from clients.errors import ClientError

VERSION = 1
FRAME_HEADER = struct.Struct("<IIQ")
"""seq, flags, client_ts (§4)."""
RESULT_HEADER = struct.Struct("<IIQQQQQ")
"""seq, flags, client_ts, received_us, infer_start_us, infer_end_us, sent_us (§4)."""
CLOSE_NORMAL = 1000

InputFormat = Literal["rgb24", "rgba", "bgra", "jpeg", "png"]
OutputFormat = Literal["rgb10a2", "rgb48"]
StreamMode = Literal["live", "lossless"]
_CHANNELS_IN = {"rgb24": 3, "rgba": 4, "bgra": 4}


def now_us() -> int:
    """Client clock for ``client_ts``: monotonic microseconds (only ever compared with itself)."""
    return time.perf_counter_ns() // 1000


@dataclass(frozen=True)
class StreamOptions:
    """What the hello asks for (§2); ``None`` leaves the choice to the server."""

    width: int
    height: int
    input: InputFormat = "rgb24"
    output: OutputFormat = "rgb48"
    mode: StreamMode = "lossless"
    operator: str | None = None
    operator_mode: Literal["fast", "quality"] | None = None
    peak_nits: float | None = None
    colour: Literal["srgb", "bt709"] = "srgb"
    credits: int = 2

    def hello(self) -> str:
        """The hello message as JSON text."""
        body: dict[str, Any] = {
            "type": "hello",
            "version": VERSION,
            "width": self.width,
            "height": self.height,
            "input": self.input,
            "output": self.output,
            "mode": self.mode,
            "colour": self.colour,
            "credits": self.credits,
        }
        for key in ("operator", "operator_mode", "peak_nits"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return json.dumps(body)


@dataclass(frozen=True)
class Ready:
    """The server's accepted settings (§3)."""

    session: str
    width: int
    height: int
    input: str
    output: str
    mode: str
    operator: str
    credits: int
    max_credits: int
    max_pending: int
    frame_bytes: int
    result_bytes: int
    idle_timeout_s: float
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Ready":
        """Parse the ready message.

        Raises
        ------
        ClientError
            If the server speaks another protocol version, or a field is missing or not of its type (a
            non-conforming server must not surface as ``KeyError``/``TypeError``).
        """
        if data.get("type") != "ready":
            raise ClientError(f"expected a 'ready' message; got {data.get('type')!r}")
        if data.get("version", VERSION) != VERSION:
            raise ClientError(f"server speaks stream protocol v{data.get('version')}; this client v{VERSION}")
        try:
            return cls(
                session=str(data["session"]),
                width=int(data["width"]),
                height=int(data["height"]),
                input=str(data["input"]),
                output=str(data["output"]),
                mode=str(data["mode"]),
                operator=str(data["operator"]),
                credits=int(data["credits"]),
                max_credits=int(data["max_credits"]),
                max_pending=int(data["max_pending"]),
                frame_bytes=int(data["frame_bytes"]),
                result_bytes=int(data["result_bytes"]),
                idle_timeout_s=float(data["idle_timeout_s"]),
                raw=data,
            )
        except KeyError as exc:
            raise ClientError(f"ready message lacks field {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ClientError(f"ready message has a field of the wrong type: {exc}") from None


@dataclass(frozen=True)
class StreamResult:
    """One converted frame with the server's timings and the client's measured round trip."""

    seq: int
    client_ts: int
    received_us: int
    infer_start_us: int
    infer_end_us: int
    sent_us: int
    payload: bytes
    width: int
    height: int
    output: str
    latency_s: float
    """Frame sent to result received, on the client clock."""

    @property
    def server_s(self) -> float:
        """Frame received to result handed to the socket, on the server clock."""
        return (self.sent_us - self.received_us) / 1e6

    @property
    def infer_s(self) -> float:
        """Time on an inference worker (operator and packing)."""
        return (self.infer_end_us - self.infer_start_us) / 1e6

    def pixels(self) -> npt.NDArray[np.uint16]:
        """PQ code values as H x W x 3 (RGB, BT.2020, full range: 10-bit for rgb10a2, 16-bit for rgb48)."""
        if self.output == "rgb10a2":
            return unpack_rgb10a2(self.payload, self.height, self.width)
        return np.frombuffer(self.payload, "<u2").reshape(self.height, self.width, 3).astype(np.uint16)


@dataclass(frozen=True)
class StreamDrop:
    """A frame the server will not answer (``stale``, ``overloaded`` or ``shutdown``; live mode only)."""

    seq: int
    reason: str


StreamEvent = StreamResult | StreamDrop


def unpack_rgb10a2(payload: bytes, height: int, width: int) -> npt.NDArray[np.uint16]:
    """Split packed R10G10B10A2 words (bits 0-9 R, 10-19 G, 20-29 B) into H x W x 3 10-bit codes."""
    words = np.frombuffer(payload, "<u4").reshape(height, width)
    out = np.empty((height, width, 3), np.uint16)
    for channel in range(3):
        out[..., channel] = (words >> (10 * channel)) & 0x3FF
    return out


def encode_frame(seq: int, payload: bytes | memoryview, client_ts: int | None = None) -> bytes:
    """Header + payload of one frame message (flags are always 0 in v1)."""
    return FRAME_HEADER.pack(seq, 0, now_us() if client_ts is None else client_ts) + bytes(payload)


def frame_payload(frame: npt.NDArray[np.uint8] | bytes, fmt: str) -> bytes:
    """Raw bytes for one frame: an H x W x C uint8 array laid out row-major, or bytes passed through.

    Raises
    ------
    ClientError
        If an array's channel count does not match the raw input format.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        return bytes(frame)
    array = np.asarray(frame)
    channels = _CHANNELS_IN.get(fmt)
    if channels is None:
        raise ClientError(f"input '{fmt}' takes encoded image bytes, not an array")
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != channels:
        raise ClientError(
            f"frame must be H x W x {channels} uint8 for input '{fmt}'; got {array.dtype} {array.shape}"
        )
    return np.ascontiguousarray(array).tobytes()


def parse_result(message: bytes, ready: Ready, received_at_us: int) -> StreamResult:
    """Decode a binary result message.

    Raises
    ------
    ClientError
        If it is shorter than the header or its payload is not ``result_bytes`` long.
    """
    if len(message) < RESULT_HEADER.size:
        raise ClientError(f"binary message of {len(message)} bytes is shorter than the 48-byte result header")
    seq, _flags, client_ts, rx, start, end, sent = RESULT_HEADER.unpack_from(message)
    payload = message[RESULT_HEADER.size :]
    if len(payload) != ready.result_bytes:
        raise ClientError(f"result {seq}: payload is {len(payload)} bytes; expected {ready.result_bytes}")
    return StreamResult(
        seq,
        client_ts,
        rx,
        start,
        end,
        sent,
        bytes(payload),
        ready.width,
        ready.height,
        ready.output,
        max(0, received_at_us - client_ts) / 1e6,
    )


class CreditWindow:
    """Client-side flow-control state of one stream (§5), shared by the sync and async clients.

    Parameters
    ----------
    ready : Ready
        The server's accepted settings (initial credits, ``max_credits``, ``max_pending``).
    """

    def __init__(self, ready: Ready) -> None:
        self.ready = ready
        self.target = ready.credits
        self.outstanding = ready.credits
        self.sent = 0
        self.results = 0
        self.drops = 0
        self.next_seq = 0

    @property
    def unanswered(self) -> int:
        """Frames sent that have neither a result nor a drop report yet."""
        return self.sent - self.results - self.drops

    def can_send(self, paced: bool = False) -> bool:
        """Whether one more frame may go out now.

        ``lossless`` stays within outstanding + ``max_pending`` (§5). ``live`` frames sent at a fixed
        pace (``paced``) always go: the server keeps the newest and reports the rest stale. Unpaced live
        senders are held to outstanding + 1 (one waiting slot), since anything more would only be dropped.
        """
        if self.ready.mode == "lossless":
            return self.unanswered < self.outstanding + self.ready.max_pending
        return paced or self.unanswered < self.outstanding + 1

    def take_seq(self) -> int:
        """The next frame's sequence number, counted as sent."""
        seq = self.next_seq
        self.next_seq += 1
        self.sent += 1
        return seq

    def on_result(self) -> int:
        """Account one result; returns how many credits to grant back (0 when none are needed).

        Raises
        ------
        ClientError
            If the server sent a result without a credit (a protocol violation).
        """
        if self.outstanding <= 0:
            raise ClientError("server sent a result without a credit")
        self.results += 1
        self.outstanding -= 1
        grant = min(self.target - self.outstanding, self.ready.max_credits - self.outstanding)
        grant = max(0, grant)
        self.outstanding += grant
        return grant

    def on_drop(self) -> None:
        """Account one drop report (no credit was spent)."""
        self.drops += 1


def credit_message(n: int) -> str:
    """A credit grant as JSON text."""
    return json.dumps({"type": "credit", "n": n})


BYE = json.dumps({"type": "bye"})


def parse_text(text: str) -> dict[str, Any]:
    """Parse a server text message.

    Raises
    ------
    ClientError
        If it is not a JSON object with a ``type``.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(f"server sent non-JSON text: {text[:80]!r}") from exc
    if not isinstance(data, dict) or "type" not in data:
        raise ClientError(f"server sent an untyped message: {text[:80]!r}")
    return data
