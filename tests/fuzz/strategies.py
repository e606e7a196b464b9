"""Hypothesis strategies shared by the fuzz modules: frames of display light, hostile floats, JSON values."""

import io
import json
import struct
import zlib
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

HOSTILE_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
"""Every float32, NaN, infinities, denormals and negatives included: what a buggy operator could emit."""

NITS = st.one_of(st.floats(0.0, 10000.0, width=32), HOSTILE_FLOATS)
"""Display light in cd/m², half in the meaningful range, half anything."""

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


def nits_frames(max_half_side: int = 4) -> st.SearchStrategy[np.ndarray]:
    """H x W x 3 float32 frames of cd/m² with even H and W (4:2:0), up to ``2 * max_half_side`` a side."""
    shapes = st.tuples(st.integers(1, max_half_side), st.integers(1, max_half_side)).map(
        lambda hw: (2 * hw[0], 2 * hw[1], 3)
    )
    return hnp.arrays(np.float32, shapes, elements=NITS)


def uint8_frames(max_side: int = 8, batch: bool = False) -> st.SearchStrategy[np.ndarray]:
    """H x W x 3 uint8 SDR frames (N x H x W x 3 with ``batch``)."""
    side = st.integers(1, max_side)
    dims = st.tuples(st.integers(1, 2), side, side) if batch else st.tuples(side, side)
    return hnp.arrays(np.uint8, dims.map(lambda d: (*d, 3)))


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON document (kept small)."""


def json_text(value: Any) -> str:
    """``value`` as JSON text, the way a peer would send it."""
    return json.dumps(value)


# -- stream hello (docs/PROTOCOL.md §2) -------------------------------------------------------------

RAW_INPUTS = ("rgb24", "rgba", "bgra")
IMAGE_INPUTS = ("jpeg", "png")
OUTPUTS = ("rgb10a2", "rgb48")

OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "version": st.just(1),
    "mode": st.sampled_from(["live", "lossless"]),
    "operator": st.none() | st.text(max_size=12),
    "operator_mode": st.none() | st.sampled_from(["fast", "quality"]),
    "peak_nits": st.none() | st.integers(100, 10000) | st.floats(100.0, 10000.0),
    "colour": st.sampled_from(["srgb", "bt709"]),
    "credits": st.integers(1, 2**40),
}


@st.composite
def valid_hellos(draw: st.DrawFn, max_side: int = 2**40, max_credits: int = 2**40) -> dict[str, Any]:
    """A hello the parser must accept: required fields plus any subset of the optional ones."""
    hello: dict[str, Any] = {
        "type": "hello",
        "width": draw(st.integers(16, max_side)),
        "height": draw(st.integers(16, max_side)),
        "input": draw(st.sampled_from(RAW_INPUTS + IMAGE_INPUTS)),
        "output": draw(st.sampled_from(OUTPUTS)),
    }
    for name in draw(st.sets(st.sampled_from(sorted(OPTIONAL_FIELDS)))):
        hello[name] = draw(OPTIONAL_FIELDS[name])
    if "credits" in hello:
        hello["credits"] = min(hello["credits"], max_credits)
    return hello


WRONG_TYPES = st.one_of(
    st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(), st.none())
)
"""Values of a JSON type no hello field has."""
NUMERIC_STRINGS = st.integers(16, 4096).map(str)
"""What a sloppy client might send for a number: the protocol's "wrong type", not a number."""

BAD_HELLO_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.text().filter(lambda t: t != "hello") | WRONG_TYPES | st.none(),
    "version": st.integers().filter(lambda v: v != 1) | st.just("1") | WRONG_TYPES,
    "width": st.integers(max_value=15) | st.floats(16.0, 4096.0) | NUMERIC_STRINGS | WRONG_TYPES | st.none(),
    "height": st.integers(max_value=15) | st.floats(16.0, 4096.0) | NUMERIC_STRINGS | WRONG_TYPES | st.none(),
    "input": st.text().filter(lambda t: t not in RAW_INPUTS + IMAGE_INPUTS) | WRONG_TYPES | st.none(),
    "output": st.text().filter(lambda t: t not in OUTPUTS) | WRONG_TYPES | st.none(),
    "mode": st.text().filter(lambda t: t not in ("live", "lossless")) | WRONG_TYPES,
    "operator": st.integers() | WRONG_TYPES,
    "operator_mode": st.text().filter(lambda t: t not in ("fast", "quality")) | WRONG_TYPES,
    "peak_nits": st.floats(max_value=99.99) | st.floats(min_value=10000.01) | NUMERIC_STRINGS | WRONG_TYPES,
    "colour": st.text().filter(lambda t: t not in ("srgb", "bt709")) | WRONG_TYPES,
    "credits": st.integers(max_value=0) | st.floats(1.0, 8.0) | NUMERIC_STRINGS | WRONG_TYPES,
}


# -- encoded images (stream jpeg/png frames, POST /v1/images) ----------------------------------------


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """``pixels`` (H x W x C uint8, or H x W) as a ``fmt`` file (any Pillow format name)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt.upper())
    return buffer.getvalue()


def png_with_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG signature and IHDR chunk (correct CRC) declaring any size and layout, then a short IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


@st.composite
def image_payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    """(declared format, bytes): valid, truncated, bit-flipped or random, as a broken client might send."""
    fmt = draw(st.sampled_from(IMAGE_INPUTS))
    pixels = draw(hnp.arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20), st.just(3))))
    data = bytearray(encode(pixels, draw(st.sampled_from(IMAGE_INPUTS))))
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "random"]))
    if kind == "truncated":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif kind == "flipped":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "random":
        data = bytearray(draw(st.binary(max_size=200)))
    return fmt, bytes(data)
