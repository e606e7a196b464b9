"""Wire format of the frame stream (docs/PROTOCOL.md): hello, headers, close codes, input decoding."""

import io
import json
import struct
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.colour.description import ColourDescription
from service.operators import Mode

VERSION = 1
FRAME_HEADER = struct.Struct("<IIQ")
"""seq, flags, client_ts."""
RESULT_HEADER = struct.Struct("<IIQQQQQ")
"""seq, flags, client_ts, received_us, infer_start_us, infer_end_us, sent_us."""

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

DEADLINE_INTERVALS = 4
"""A live frame's default deadline, in frame intervals of its stream (docs/PROTOCOL.md §5)."""
DEADLINE_MIN_S = 0.1
DEADLINE_MAX_S = 2.0
"""Bounds of the default deadline: event-loop jitter must not drop frames, a paused stream must not stall."""
FIRST_INTERVAL_S = 1 / 30
"""The frame interval assumed before a stream's own gaps are measured."""

InputFormat = Literal["rgb24", "rgba", "bgra", "jpeg", "png"]
StreamOutput = Literal["rgb10a2", "rgb48"]
BYTES_PER_PIXEL_IN = {"rgb24": 3, "rgba": 4, "bgra": 4, "jpeg": 0, "png": 0}
BYTES_PER_PIXEL_OUT = {"rgb10a2": 4, "rgb48": 6}
COLOURS = {"srgb": ColourDescription.still(), "bt709": ColourDescription.video()}


class ProtocolError(Exception):
    """The peer broke the protocol; the stream closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Hello(BaseModel):
    """The client's first message (§2 of docs/PROTOCOL.md).

    Strict: §2 refuses a value of the wrong JSON type, so ``"64"`` or ``64.0`` is not a width and ``true`` is
    not one credit (lax pydantic would coerce all three).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: Literal["hello"]
    version: Literal[1] = 1
    width: int = Field(ge=16)
    height: int = Field(ge=16)
    input: InputFormat
    output: StreamOutput
    mode: Literal["live", "lossless"] = "live"
    operator: str | None = None
    operator_mode: Mode | None = None
    peak_nits: float | None = Field(default=None, ge=100.0, le=10000.0)
    colour: Literal["srgb", "bt709"] = "srgb"
    credits: int = Field(default=1, ge=1)
    deadline_ms: int | None = Field(default=None, ge=1, le=60_000)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: object) -> object:
        """Refuse ``true``, which equals 1 in Python and so slips through ``Literal[1]`` even when strict."""
        if isinstance(value, bool):
            raise ValueError(f"Input should be {VERSION}, not a boolean")
        return value


class Credit(BaseModel):
    """A credit grant (§4); strict for the same reason as :class:`Hello`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["credit"]
    n: int = Field(ge=1)


def reason_of(error: ValidationError, prefix: str) -> str:
    """A close reason naming the first bad field, within WebSocket's 123-byte limit."""
    first = error.errors()[0]
    loc = ".".join(map(str, first.get("loc", ()))) or "message"
    return clip_reason(f"{prefix}.{loc}: {first.get('msg', 'invalid')}")


def clip_reason(reason: str) -> str:
    """Truncate to the 123 UTF-8 bytes a close frame allows (RFC 6455 clause 5.5).

    Lone surrogates (a JSON string escape can put one in a key the reason repeats) are backslash-escaped
    instead of raising: a reason must always be sendable.
    """
    data = reason.encode("utf-8", "backslashreplace")[:123]
    return data.decode("utf-8", "ignore")


def parse_json(text: str) -> object:
    """The JSON value of a text message.

    Raises
    ------
    ProtocolError
        1003 if the text is not JSON, or is JSON nested too deeply to parse (``"[[[[..."`` passes the size
        limit, and the stdlib parser recurses once per level).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError(CLOSE_UNSUPPORTED, "text message is not JSON") from None
    except RecursionError:
        raise ProtocolError(CLOSE_UNSUPPORTED, "text message is JSON nested too deeply") from None


def parse_frame_header(message: bytes) -> tuple[int, int, int]:
    """(seq, flags, client_ts) of a binary frame.

    Raises
    ------
    ProtocolError
        If the message is shorter than the header.
    """
    if len(message) < FRAME_HEADER.size:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, f"binary message of {len(message)} bytes is shorter than the 16-byte header"
        )
    seq, flags, client_ts = FRAME_HEADER.unpack_from(message)
    return seq, flags, client_ts


def raw_frame(
    payload: memoryview, fmt: InputFormat, height: int, width: int, seq: int
) -> npt.NDArray[np.uint8]:
    """A zero-copy H x W x 3 RGB view of a raw payload (alpha and BGR order handled by striding).

    Raises
    ------
    ProtocolError
        If the payload size does not match.
    """
    channels = BYTES_PER_PIXEL_IN[fmt]
    expected = height * width * channels
    if len(payload) != expected:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, f"frame {seq}: payload is {len(payload)} bytes; expected {expected}"
        )
    pixels = np.frombuffer(payload, np.uint8).reshape(height, width, channels)
    if fmt == "rgb24":
        return pixels
    if fmt == "rgba":
        return pixels[..., :3]
    return pixels[..., 2::-1]


_PILLOW_FORMATS = ("JPEG", "PNG")
"""The only Pillow plugins a frame may reach: no other parser ever sees peer bytes."""
_KINDS: dict[str, tuple[str, ...]] = {"jpeg": ("jpeg", "mpo"), "png": ("png",)}
"""Pillow's format names per input; a camera JPEG with an MP (multi-picture) index opens as "MPO"."""


def decode_image(
    payload: bytes, fmt: InputFormat, height: int, width: int, seq: int
) -> npt.NDArray[np.uint8]:
    """Decode one JPEG/PNG frame to H x W x 3 uint8 (run in a thread).

    Any exception from Pillow means the payload does not decode: on hostile input it raises far more than
    ``OSError`` (``struct.error``, ``EOFError``, ``zlib.error``, ``DecompressionBombError`` for a header
    declaring billions of pixels...), and each of those is the peer's fault, not an internal error.

    Raises
    ------
    ProtocolError
        If it does not decode, is not the declared format, or has the wrong size.
    """
    from PIL import Image

    rgb: npt.NDArray[np.uint8] | None = None
    try:
        with Image.open(io.BytesIO(payload), formats=_PILLOW_FORMATS) as image:
            kind = (image.format or "").lower()
            size = image.size
            if kind in _KINDS[fmt] and size == (width, height):
                rgb = np.asarray(image.convert("RGB"), np.uint8)
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        reason = clip_reason(f"frame {seq}: {fmt} does not decode ({detail})")
        raise ProtocolError(CLOSE_UNSUPPORTED, reason) from exc
    if kind not in _KINDS[fmt]:
        raise ProtocolError(CLOSE_UNSUPPORTED, f"frame {seq}: payload is {kind or 'unknown'}, not {fmt}")
    if rgb is None:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, f"frame {seq}: image is {size[0]}x{size[1]}; expected {width}x{height}"
        )
    return rgb
