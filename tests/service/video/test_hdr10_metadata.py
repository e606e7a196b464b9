import pytest

from service.video.hdr10_metadata import (
    ContentLightLevel,
    HDR10Metadata,
    MasteringDisplay,
    escape_rbsp,
    hvcc_length_size,
    patch_av1_obus,
    patch_av1c,
    patch_hevc_access_unit,
    patch_hvcc,
    svtav1_params,
    unescape_rbsp,
    x265_params,
)

# x265's prefix SEI as it comes out of MP4 (4-byte length + NAL header 4e 01 + CLL 1000/400 + trailing bits).
CLL_SEI = bytes.fromhex("4e01900403e8019080")
OTHER_NAL = bytes.fromhex("2801af1c346eef16391125")  # an IDR slice start: must pass through untouched


def _length_prefixed(*nals: bytes) -> bytes:
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)


def _sei_values(nal: bytes) -> tuple[int, int]:
    rbsp = unescape_rbsp(nal[2:])
    assert rbsp[0] == 144 and rbsp[1] == 4
    return int.from_bytes(rbsp[2:4], "big"), int.from_bytes(rbsp[4:6], "big")


def test_default_mastering_display_strings_match_the_measured_encoder_syntax():
    md = MasteringDisplay()
    assert md.x265() == "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    assert md.svtav1() == ("G(0.2650,0.6900)B(0.1500,0.0600)R(0.6800,0.3200)WP(0.3127,0.3290)L(1000,0.0001)")


def test_params_carry_tags_and_light_level():
    meta = HDR10Metadata(MasteringDisplay(max_nits=4000), ContentLightLevel(812, 133))
    x = x265_params(meta)
    assert (
        x["max-cll"] == "812,133" and x["transfer"] == "smpte2084" and "L(40000000,1)" in x["master-display"]
    )
    s = svtav1_params(meta)
    assert s["content-light"] == "812,133" and s["transfer-characteristics"] == "16"


def test_unknown_light_level_is_none_and_codes_as_zero():
    assert ContentLightLevel().coded() == (0, 0)
    assert ContentLightLevel.from_measurements(70000.4, 12.5) == ContentLightLevel(65535, 12)


def test_mastering_display_rejects_inverted_range():
    with pytest.raises(ValueError, match="invalid"):
        MasteringDisplay(max_nits=0.001, min_nits=0.01)


@pytest.mark.parametrize(
    "raw", [b"\x00\x00\x00", b"\x00\x00\x01\x00\x00\x02", b"\x12\x00\x00\x03\x00", b"\x00" * 7]
)
def test_emulation_prevention_round_trip(raw):
    escaped = escape_rbsp(raw)
    assert (
        b"\x00\x00\x00" not in escaped and b"\x00\x00\x01" not in escaped and b"\x00\x00\x02" not in escaped
    )
    assert unescape_rbsp(escaped) == raw


def test_hevc_patch_rewrites_sei_and_leaves_other_nals():
    packet = _length_prefixed(CLL_SEI, OTHER_NAL)
    patched = patch_hevc_access_unit(packet, ContentLightLevel(523, 87))
    size = int.from_bytes(patched[:4], "big")
    assert _sei_values(patched[4 : 4 + size]) == (523, 87)
    assert patched[4 + size :] == _length_prefixed(OTHER_NAL)


def test_hevc_patch_adds_emulation_prevention_and_updates_the_nal_length():
    # 0 and 3: the payload 00 00 00 03 needs an emulation prevention byte (00 00 03 00 03), so the NAL grows.
    patched = patch_hevc_access_unit(_length_prefixed(CLL_SEI), ContentLightLevel(0, 3))
    size = int.from_bytes(patched[:4], "big")
    assert size == len(CLL_SEI) + 1 == len(patched) - 4
    assert _sei_values(patched[4:]) == (0, 3)
    # and back: patching again to plain values shrinks it again
    again = patch_hevc_access_unit(patched, ContentLightLevel(1000, 400))
    assert again == _length_prefixed(CLL_SEI)


def test_hevc_patch_handles_annexb():
    stream = b"\x00\x00\x00\x01" + CLL_SEI + b"\x00\x00\x01" + OTHER_NAL
    patched = patch_hevc_access_unit(stream, ContentLightLevel(600, 50))
    assert patched.startswith(b"\x00\x00\x00\x01")
    nal = patched[4 : patched.index(b"\x00\x00\x01", 4)]
    assert _sei_values(nal) == (600, 50)
    assert patched.endswith(b"\x00\x00\x01" + OTHER_NAL)


def test_hvcc_patch():
    # The hvcC x265 writes into MP4 (VPS/SPS/PPS arrays elided to keep the test small) plus its SEI array.
    header = bytes.fromhex("0102200000009000000000001ef000fcfdfafa00000f")
    sei_array = bytes([0x27]) + (1).to_bytes(2, "big") + len(CLL_SEI).to_bytes(2, "big") + CLL_SEI
    record = header + bytes([1]) + sei_array
    assert hvcc_length_size(record) == 4
    patched = patch_hvcc(record, ContentLightLevel(321, 0))
    assert patched[:23] == record[:23]
    nal_len = int.from_bytes(patched[26:28], "big")
    assert _sei_values(patched[28 : 28 + nal_len]) == (321, 0)


def test_av1_patch_rewrites_cll_metadata_obu_in_place():
    seq = bytes.fromhex("0a0e02000005157fbc4af95091009040")[:16]  # sequence header OBU, 14-byte payload
    cll = bytes.fromhex("2a060103e8019080")  # OBU_METADATA, HDR_CLL, 1000/400, trailing bits
    mdcv = bytes.fromhex("2a1a02") + bytes(26 - 1)  # OBU_METADATA, HDR_MDCV (zeros): must not change
    data = seq + cll + mdcv
    patched = patch_av1_obus(data, ContentLightLevel(777, 55))
    assert len(patched) == len(data)
    assert patched[:16] == seq and patched[-len(mdcv) :] == mdcv
    assert patched[16 + 3 : 16 + 7] == (777).to_bytes(2, "big") + (55).to_bytes(2, "big")
    av1c = bytes.fromhex("81004c00") + data
    assert patch_av1c(av1c, ContentLightLevel(777, 55)) == av1c[:4] + patched
