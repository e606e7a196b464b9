"""Properties of the stream wire format (docs/PROTOCOL.md), server parser and client twin together.

The example tests in tests/service/stream and tests/clients pin particular messages; these say what must
hold for *every* message: the server never fails on peer input with anything but :class:`ProtocolError`
(any other exception would close the stream with 1011, an internal error, for the peer's mistake), close
reasons always fit a close frame, and what one side packs the other side parses back unchanged.
"""

import contextlib
import io
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from PIL import Image
from pydantic import ValidationError

from clients.errors import ClientError
from clients.protocol import (
    CreditWindow,
    Ready,
    StreamOptions,
    encode_frame,
    frame_payload,
    parse_result,
    parse_text,
)
from service.colour.packing import pack_rgb10a2, pack_rgb48, unpack_rgb10a2
from service.stream.protocol import (
    BYTES_PER_PIXEL_IN,
    BYTES_PER_PIXEL_OUT,
    CLOSE_UNSUPPORTED,
    FRAME_HEADER,
    RESULT_HEADER,
    Credit,
    Hello,
    ProtocolError,
    clip_reason,
    decode_image,
    parse_frame_header,
    raw_frame,
    reason_of,
)
from tests.fuzz.strategies import (
    BAD_HELLO_VALUES,
    IMAGE_INPUTS,
    JSON_VALUES,
    RAW_INPUTS,
    U32,
    U64,
    encode,
    image_payloads,
    json_text,
    nits_frames,
    png_with_header,
    valid_hellos,
)

CLOSE_REASON_BYTES = 123
"""RFC 6455 clause 5.5: a close frame's payload is at most 125 bytes, two of them the code."""


# -- hello ------------------------------------------------------------------------------------------


@given(valid_hellos())
def test_every_valid_hello_is_accepted_as_sent(fields: dict[str, Any]) -> None:
    hello = Hello.model_validate_json(json_text(fields))
    for name, value in fields.items():
        assert getattr(hello, name) == value


@given(valid_hellos(), st.data())
def test_a_bad_field_is_refused_and_named(fields: dict[str, Any], data: st.DataObject) -> None:
    """§2: a wrong type or a value out of range closes with 1008 and a reason naming the field."""
    name = data.draw(st.sampled_from(sorted(BAD_HELLO_VALUES)))
    fields[name] = data.draw(BAD_HELLO_VALUES[name], label=name)
    with pytest.raises(ValidationError) as info:
        Hello.model_validate_json(json.dumps(fields))
    reason = reason_of(info.value, "hello")
    assert reason.startswith(f"hello.{name}"), reason
    assert len(reason.encode()) <= CLOSE_REASON_BYTES


@given(valid_hellos(), st.text(min_size=1).filter(lambda k: k not in Hello.model_fields), JSON_VALUES)
def test_unknown_fields_are_refused_and_named(fields: dict[str, Any], key: str, value: Any) -> None:
    fields[key] = value
    with pytest.raises(ValidationError) as info:
        Hello.model_validate_json(json.dumps(fields))
    reason = reason_of(info.value, "hello")
    assert len(reason.encode()) <= CLOSE_REASON_BYTES
    assert reason == clip_reason(f"hello.{key}: Extra inputs are not permitted")


@given(st.one_of(st.text(), JSON_VALUES.map(json_text), valid_hellos().map(json_text).map(lambda t: t[:-1])))
def test_any_text_is_a_hello_or_a_sendable_refusal(text: str) -> None:
    for model, prefix in ((Hello, "hello"), (Credit, "credit")):
        try:
            model.model_validate_json(text)
        except ValidationError as exc:
            reason = reason_of(exc, prefix)
            assert reason.startswith(prefix) and len(reason.encode()) <= CLOSE_REASON_BYTES


@given(st.text(alphabet=st.characters(exclude_categories=[])))
def test_clip_reason_fits_a_close_frame_for_any_string(reason: str) -> None:
    """Lone surrogates included: JSON escapes such as ``"\\ud800"`` put them in keys the reason repeats."""
    clipped = clip_reason(reason)
    data = clipped.encode()
    assert len(data) <= CLOSE_REASON_BYTES
    assert data.decode() == clipped


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_clip_reason_keeps_the_longest_whole_character_prefix(reason: str) -> None:
    clipped = clip_reason(reason)
    assert reason.startswith(clipped)
    if clipped != reason:
        assert len((clipped + reason[len(clipped)]).encode()) > CLOSE_REASON_BYTES


# -- client hello -> server -------------------------------------------------------------------------


@given(
    st.builds(
        StreamOptions,
        width=st.integers(16, 8192),
        height=st.integers(16, 8192),
        input=st.sampled_from(RAW_INPUTS + IMAGE_INPUTS),
        output=st.sampled_from(sorted(BYTES_PER_PIXEL_OUT)),
        mode=st.sampled_from(["live", "lossless"]),
        operator=st.none() | st.sampled_from(["bt2408", "bt2446a", "inverse_reinhard", "mqn"]),
        operator_mode=st.none() | st.sampled_from(["fast", "quality"]),
        peak_nits=st.none() | st.integers(100, 10000) | st.floats(100.0, 10000.0),
        colour=st.sampled_from(["srgb", "bt709"]),
        credits=st.integers(1, 64),
    )
)
def test_client_hello_parses_on_the_server_unchanged(options: StreamOptions) -> None:
    hello = Hello.model_validate_json(options.hello())
    for name in (
        "width",
        "height",
        "input",
        "output",
        "mode",
        "operator",
        "operator_mode",
        "colour",
        "credits",
    ):
        assert getattr(hello, name) == getattr(options, name)
    assert hello.peak_nits == options.peak_nits


# -- binary frames ----------------------------------------------------------------------------------


@given(st.binary(max_size=40))
def test_frame_header_of_any_message(message: bytes) -> None:
    if len(message) < FRAME_HEADER.size:
        with pytest.raises(ProtocolError) as info:
            parse_frame_header(message)
        assert info.value.code == CLOSE_UNSUPPORTED
    else:
        assert parse_frame_header(message) == struct.unpack("<IIQ", message[:16])


@st.composite
def raw_frames(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    fmt = draw(st.sampled_from(RAW_INPUTS))
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)), BYTES_PER_PIXEL_IN[fmt])
    return fmt, draw(hnp.arrays(np.uint8, shape))


@given(raw_frames(), U32, U64)
def test_client_frame_round_trips_through_the_server_parser(
    frame: tuple[str, np.ndarray], seq: int, ts: int
) -> None:
    fmt, pixels = frame
    message = encode_frame(seq, frame_payload(pixels, fmt), client_ts=ts)
    assert parse_frame_header(message) == (seq, 0, ts)
    h, w, _ = pixels.shape
    rgb = raw_frame(memoryview(message)[FRAME_HEADER.size :], fmt, h, w, seq)  # type: ignore[arg-type]
    expected = {"rgb24": pixels, "rgba": pixels[..., :3], "bgra": pixels[..., 2::-1]}[fmt]
    assert rgb.shape == (h, w, 3)
    np.testing.assert_array_equal(rgb, expected)


@given(st.sampled_from(RAW_INPUTS), st.integers(1, 8), st.integers(1, 8), st.binary(max_size=300), U32)
def test_raw_payload_of_the_wrong_size_is_refused(fmt: str, h: int, w: int, payload: bytes, seq: int) -> None:
    expected = h * w * BYTES_PER_PIXEL_IN[fmt]
    if len(payload) == expected:
        assert raw_frame(memoryview(payload), fmt, h, w, seq).shape == (h, w, 3)  # type: ignore[arg-type]
    else:
        with pytest.raises(ProtocolError) as info:
            raw_frame(memoryview(payload), fmt, h, w, seq)  # type: ignore[arg-type]
        assert info.value.code == CLOSE_UNSUPPORTED
        assert f"expected {expected}" in info.value.reason


# -- encoded image frames ---------------------------------------------------------------------------


@given(image_payloads(), st.integers(1, 20), st.integers(1, 20), U32)
def test_any_image_payload_decodes_or_is_refused_with_1003(
    payload: tuple[str, bytes], h: int, w: int, seq: int
) -> None:
    fmt, data = payload
    try:
        rgb = decode_image(data, fmt, h, w, seq)  # type: ignore[arg-type]
    except ProtocolError as exc:
        assert exc.code == CLOSE_UNSUPPORTED
        assert exc.reason.startswith(f"frame {seq}") and len(exc.reason.encode()) <= CLOSE_REASON_BYTES
    else:
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8


@given(
    st.sampled_from(IMAGE_INPUTS),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.sampled_from([(8, 2), (8, 6), (16, 2), (1, 0), (8, 3), (3, 7)]),
)
def test_png_header_declaring_any_size_is_refused_with_1003(
    fmt: str, width: int, height: int, layout: tuple[int, int]
) -> None:
    """A 100-byte frame claiming 2^31 x 2^31 pixels trips Pillow's decompression-bomb guard: still 1003."""
    with pytest.raises(ProtocolError) as info:
        decode_image(png_with_header(width, height, *layout), fmt, 16, 16, 0)  # type: ignore[arg-type]
    assert info.value.code == CLOSE_UNSUPPORTED


@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3))), st.booleans())
def test_jpeg_frames_decode_even_with_a_multi_picture_index(pixels: np.ndarray, mpo: bool) -> None:
    """Cameras and phones write JPEGs with an MP index, which Pillow reports as "MPO": still a JPEG."""
    h, w, _ = pixels.shape
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if mpo:
        image.save(buffer, format="MPO", save_all=True, append_images=[image])
    else:
        image.save(buffer, format="JPEG")
    rgb = decode_image(buffer.getvalue(), "jpeg", h, w, 0)
    assert rgb.shape == pixels.shape


@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3))), U32)
def test_png_frames_decode_to_the_exact_pixels(pixels: np.ndarray, seq: int) -> None:
    h, w, _ = pixels.shape
    np.testing.assert_array_equal(decode_image(encode(pixels, "png"), "png", h, w, seq), pixels)
    assume(h != w)
    with pytest.raises(ProtocolError, match="expected"):
        decode_image(encode(pixels, "png"), "png", w, h, seq)


# -- results: server pack -> client parse -----------------------------------------------------------


@given(
    nits_frames(), st.sampled_from(sorted(BYTES_PER_PIXEL_OUT)), st.tuples(U32, U64, U64, U64, U64, U64), U64
)
def test_server_result_parses_on_the_client_unchanged(
    nits: np.ndarray, output: str, header: tuple[int, ...], received_at: int
) -> None:
    seq, client_ts, rx, start, end, sent = header
    h, w, _ = nits.shape
    packed = pack_rgb10a2(nits) if output == "rgb10a2" else pack_rgb48(nits)
    message = RESULT_HEADER.pack(seq, 0, client_ts, rx, start, end, sent) + packed.tobytes()
    ready = Ready(
        "s",
        w,
        h,
        "rgb24",
        output,
        "live",
        "bt2408",
        1,
        1,
        1,
        3 * w * h,
        BYTES_PER_PIXEL_OUT[output] * w * h,
        1.0,
    )
    result = parse_result(message, ready, received_at)
    assert (result.seq, result.client_ts, result.received_us) == (seq, client_ts, rx)
    assert (result.infer_start_us, result.infer_end_us, result.sent_us) == (start, end, sent)
    assert result.latency_s >= 0.0
    expected = unpack_rgb10a2(packed) if output == "rgb10a2" else packed
    np.testing.assert_array_equal(result.pixels(), expected)


@given(st.binary(max_size=80), st.integers(0, 40))
def test_any_binary_message_is_a_result_or_a_client_error(message: bytes, result_bytes: int) -> None:
    ready = Ready("s", 1, 1, "rgb24", "rgb48", "live", "bt2408", 1, 1, 1, 3, result_bytes, 1.0)
    try:
        result = parse_result(message, ready, 0)
    except ClientError:
        assert len(message) != RESULT_HEADER.size + result_bytes
    else:
        assert len(result.payload) == result_bytes


READY_FIELDS = {
    "session": st.text(max_size=8),
    "width": st.integers(16, 4096),
    "height": st.integers(16, 4096),
    "input": st.sampled_from(RAW_INPUTS),
    "output": st.sampled_from(sorted(BYTES_PER_PIXEL_OUT)),
    "mode": st.sampled_from(["live", "lossless"]),
    "operator": st.text(max_size=8),
    "credits": st.integers(1, 16),
    "max_credits": st.integers(1, 16),
    "max_pending": st.integers(1, 16),
    "frame_bytes": st.integers(0, 2**30),
    "result_bytes": st.integers(0, 2**30),
    "idle_timeout_s": st.floats(0.1, 600.0),
}


@given(
    st.fixed_dictionaries({"type": st.just("ready"), **READY_FIELDS}),
    st.dictionaries(st.text().filter(lambda k: k != "version"), JSON_VALUES),
)
def test_ready_with_every_field_parses_and_extra_fields_are_kept(
    fields: dict[str, Any], extra: dict[str, Any]
) -> None:
    data = {**extra, **fields}
    ready = Ready.from_json(json.loads(json.dumps(data)))
    for name in READY_FIELDS:
        assert getattr(ready, name) == fields[name]
    assert ready.raw == data


@given(
    st.fixed_dictionaries(
        {"type": st.just("ready")}, optional={k: v | JSON_VALUES for k, v in READY_FIELDS.items()}
    )
    | st.dictionaries(st.text(max_size=12), JSON_VALUES)
)
def test_any_ready_message_parses_or_is_a_client_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ClientError):
        Ready.from_json(data)


@given(st.text() | JSON_VALUES.map(json_text))
def test_any_server_text_parses_or_is_a_client_error(text: str) -> None:
    try:
        message = parse_text(text)
    except ClientError:
        pass
    else:
        assert isinstance(message, dict) and "type" in message


# -- client flow control against a model server (§5) -----------------------------------------------


class CreditConversation(RuleBasedStateMachine):
    """A :class:`CreditWindow` driven against a server that keeps §5 to the letter.

    The server's view (credits granted minus results sent, frames unanswered) is tracked independently of
    the window; any step where the client would break a rule the server enforces with 1008 fails.
    """

    @initialize(
        mode=st.sampled_from(["live", "lossless"]),
        credits=st.integers(1, 16),
        max_credits=st.integers(1, 16),
        max_pending=st.integers(1, 16),
    )
    def connect(self, mode: str, credits: int, max_credits: int, max_pending: int) -> None:
        assume(credits <= max_credits)  # the server refuses such a hello before any ready
        self.ready = Ready(
            "s", 16, 16, "rgb24", "rgb48", mode, "bt2408", credits, max_credits, max_pending, 768, 1536, 30.0
        )
        self.window = CreditWindow(self.ready)
        self.granted = credits
        self.unanswered: list[int] = []

    @rule(paced=st.booleans())
    def client_sends(self, paced: bool) -> None:
        if self.window.can_send(paced):
            self.unanswered.append(self.window.take_seq())
            if self.ready.mode == "lossless":  # beyond this the server closes 1008 (or would deadlock)
                assert len(self.unanswered) <= self.granted + self.ready.max_pending

    @precondition(lambda self: hasattr(self, "window") and self.unanswered and self.granted > 0)
    @rule()
    def server_sends_a_result(self) -> None:
        self.unanswered.pop(0)
        self.granted -= 1
        self.granted += self.window.on_result()

    @precondition(
        lambda self: hasattr(self, "window") and self.ready.mode == "live" and len(self.unanswered) > 1
    )
    @rule()
    def server_drops_a_stale_frame(self) -> None:
        self.unanswered.pop(0)
        self.window.on_drop()

    @invariant()
    def both_sides_agree(self) -> None:
        if not hasattr(self, "window"):
            return
        assert self.window.outstanding == self.granted
        assert 1 <= self.granted <= self.ready.max_credits  # never over max_credits (1008), never starved
        assert self.window.unanswered == len(self.unanswered)
        if not self.unanswered:
            assert self.window.can_send(), "an idle client must be able to send"


TestCreditConversation = CreditConversation.TestCase
