"""The bitstream rewriting of MaxCLL/MaxFALL (service/video/hdr10_metadata.py) on generated SEI and OBU
streams: the light values land where the standards put them, and no other byte changes.

Pass 2 of every conversion rewrites each packet this way, so a slip here corrupts every HDR10 output.
"""

from hypothesis import given
from hypothesis import strategies as st

from service.video.hdr10_metadata import (
    AV1_METADATA_HDR_CLL,
    AV1_OBU_METADATA,
    HEVC_NAL_PREFIX_SEI,
    HEVC_NAL_SUFFIX_SEI,
    SEI_CONTENT_LIGHT_LEVEL,
    ContentLightLevel,
    escape_rbsp,
    patch_av1_obus,
    patch_hevc_access_unit,
    patch_hevc_sei_nal,
    unescape_rbsp,
)

LIGHT = st.builds(ContentLightLevel, st.none() | st.integers(0, 0xFFFF), st.none() | st.integers(0, 0xFFFF))


@given(st.binary(max_size=64))
def test_emulation_prevention_round_trips_and_leaves_no_start_code(rbsp: bytes) -> None:
    """H.265 clause 7.4.2: no 00 00 0x (x <= 3) in a NAL payload; unescaping restores the RBSP exactly."""
    ebsp = escape_rbsp(rbsp)
    assert unescape_rbsp(ebsp) == rbsp
    for x in range(3):
        assert bytes([0, 0, x]) not in ebsp


def sei_number(value: int) -> bytes:
    """payloadType / payloadSize coding (H.265 clause 7.3.5): 0xFF per 255, then the rest."""
    return b"\xff" * (value // 255) + bytes([value % 255])


SEI_MESSAGES = st.lists(
    st.tuples(st.integers(0, 300).filter(lambda t: t != SEI_CONTENT_LIGHT_LEVEL), st.binary(max_size=12))
    | st.tuples(st.just(SEI_CONTENT_LIGHT_LEVEL), st.binary(min_size=4, max_size=4)),
    min_size=1,
    max_size=4,
)


def sei_nal(messages: list[tuple[int, bytes]], suffix: bool) -> bytes:
    rbsp = b"".join(sei_number(kind) + sei_number(len(body)) + body for kind, body in messages) + b"\x80"
    nal_type = HEVC_NAL_SUFFIX_SEI if suffix else HEVC_NAL_PREFIX_SEI
    return bytes([nal_type << 1, 1]) + escape_rbsp(rbsp)


@given(SEI_MESSAGES, st.booleans(), LIGHT)
def test_sei_rewrite_changes_only_the_light_levels(
    messages: list[tuple[int, bytes]], suffix: bool, light: ContentLightLevel
) -> None:
    cll, fall = light.coded()
    coded = cll.to_bytes(2, "big") + fall.to_bytes(2, "big")
    expected = [(kind, coded if kind == SEI_CONTENT_LIGHT_LEVEL else body) for kind, body in messages]
    patched = patch_hevc_sei_nal(sei_nal(messages, suffix), light)
    assert patched == sei_nal(expected, suffix)
    # In a length-prefixed access unit, next to other NAL units, the prefix follows the new length.
    other = bytes([1 << 1, 1]) + b"\x00\x00\x03\x01slice"
    unit = b"".join(len(n).to_bytes(4, "big") + n for n in (other, sei_nal(messages, suffix), other))
    want = b"".join(len(n).to_bytes(4, "big") + n for n in (other, patched, other))
    assert patch_hevc_access_unit(unit, light) == want


def leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


OBUS = st.lists(
    st.tuples(st.sampled_from([1, 2, 3, 4, 6, 7, 8]), st.binary(max_size=10))  # not metadata
    | st.tuples(st.just(AV1_OBU_METADATA), st.integers(2, 6).map(leb128).map(lambda t: t + b"\x00" * 4))
    | st.tuples(st.just(AV1_OBU_METADATA), st.binary(min_size=4, max_size=4).map(lambda b: b"\x01" + b)),
    min_size=1,
    max_size=5,
)


def obu_stream(obus: list[tuple[int, bytes]], extension: bool) -> bytes:
    """Sized OBUs (AV1 clause 5.3), optionally with an extension byte each."""
    flags = 0x02 | (0x04 if extension else 0)  # obu_has_size_field, obu_extension_flag
    ext = b"\x00" if extension else b""
    return b"".join(bytes([kind << 3 | flags]) + ext + leb128(len(body)) + body for kind, body in obus)


@given(OBUS, st.booleans(), LIGHT)
def test_obu_rewrite_changes_only_hdr_cll_metadata(
    obus: list[tuple[int, bytes]], extension: bool, light: ContentLightLevel
) -> None:
    cll, fall = light.coded()
    coded = cll.to_bytes(2, "big") + fall.to_bytes(2, "big")
    expected = [
        (kind, body[:1] + coded + body[5:])
        if kind == AV1_OBU_METADATA and body[:1] == bytes([AV1_METADATA_HDR_CLL])
        else (kind, body)
        for kind, body in obus
    ]
    assert patch_av1_obus(obu_stream(obus, extension), light) == obu_stream(expected, extension)
