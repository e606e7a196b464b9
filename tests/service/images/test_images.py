import io
import struct
import zlib
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.errors import AlreadyHDRError, CorruptStreamError
from service.images.exr import BT2020_CHROMATICITIES
from service.images.png import encode_pq_png
from service.images.read import read_sdr_image
from service.operators import create_operator
from service.pipeline import convert_image


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        (crc,) = struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])
        assert crc == zlib.crc32(kind + body), kind
        out.append((kind, body))
        pos += 12 + size
    return out


def test_pq_png_layout_and_code_values():
    nits = np.array(
        [[[0.0, 100.0, 203.0], [1000.0, 10000.0, 50.0], [5.0, 5.0, 5.0]]], np.float32
    )  # odd width
    chunks = _chunks(encode_pq_png(nits))
    kinds = [k for k, _ in chunks]
    assert kinds == [b"IHDR", b"cICP", b"mDCV", b"cLLI", b"IDAT", b"IEND"]
    assert dict(chunks)[b"cICP"] == bytes((9, 16, 0, 1))
    width, height, depth, colour_type = struct.unpack(">IIBB", dict(chunks)[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (3, 1, 16, 2)
    raw = zlib.decompress(dict(chunks)[b"IDAT"])
    assert raw[0] == 0  # filter byte
    codes = np.frombuffer(raw[1:], ">u2").reshape(1, 3, 3)
    expected = np.rint(eotf_inverse_st2084(nits) * 65535)
    assert np.array_equal(codes, expected)
    assert codes[0, 0, 2] == round(0.5807 * 65535) or abs(int(codes[0, 0, 2]) - 0.58069 * 65535) < 5


def _mdcv_clli(data: bytes) -> tuple[tuple[int, ...], tuple[float, float]]:
    """mDCV as its ten integers; cLLI as (MaxCLL, MaxFALL) in cd/m² (PNG third edition, 11.3.2.7-8)."""
    chunks = dict(_chunks(data))
    assert len(chunks[b"mDCV"]) == 24 and len(chunks[b"cLLI"]) == 8
    cll, fall = struct.unpack(">2I", chunks[b"cLLI"])
    return struct.unpack(">8H2I", chunks[b"mDCV"]), (cll / 10000, fall / 10000)


def test_pq_png_mastering_display_and_content_light():
    rng = np.random.default_rng(3)
    nits = (rng.random((20, 30, 3)) ** 2 * 800).astype(np.float32)
    nits[4, 5] = (40.0, 950.0, 3.0)  # the brightest pixel, by its green
    mdcv, (cll, fall) = _mdcv_clli(encode_pq_png(nits, peak_nits=1000.0))
    # Display P3 primaries R, G, B and D65 in 0.00002, then 1000 and 0.0001 cd/m² in 0.0001 cd/m²
    assert mdcv == (34000, 16000, 13250, 34500, 7500, 3000, 15635, 16450, 1000 * 10000, 1)
    # NumPy recomputation on the 16-bit codes written: max(R, G, B) after PQ decoding
    light = eotf_st2084(np.rint(eotf_inverse_st2084(nits.astype(np.float64)) * 65535).max(axis=-1) / 65535)
    assert cll == pytest.approx(light.max(), abs=1e-4) and cll == pytest.approx(950.0, rel=1e-4)
    assert fall == pytest.approx(light.mean(), abs=1e-4)
    # brighter than the master: capped at its peak; the mastering display follows the operator's peak
    mdcv, (cll, fall) = _mdcv_clli(encode_pq_png(np.full((2, 2, 3), 4000.0, np.float32), peak_nits=2000.0))
    assert mdcv[8] == 2000 * 10000 and (cll, fall) == (2000.0, 2000.0)
    mdcv, (cll, fall) = _mdcv_clli(encode_pq_png(np.zeros((2, 2, 3), np.float32)))
    assert (cll, fall) == (0.0, 0.0)


def test_convert_image_png_declares_the_operators_peak(tmp_path):
    src = tmp_path / "white.png"
    Image.new("RGB", (4, 4), (255, 255, 255)).save(src)
    convert_image(src, tmp_path / "hdr.png", create_operator("bt2446a", peak_nits=600.0))
    mdcv, (cll, fall) = _mdcv_clli((tmp_path / "hdr.png").read_bytes())
    assert mdcv[8] == 600 * 10000
    assert cll == pytest.approx(600.0, rel=2e-3) and fall == pytest.approx(cll)  # white -> the peak


def test_convert_image_exr_is_linear_bt2020_nits(tmp_path):
    src = tmp_path / "white.png"
    Image.new("RGB", (7, 5), (255, 255, 255)).save(src)  # odd sizes are fine for stills
    result = convert_image(src, tmp_path / "white.exr", create_operator("bt2408", peak_nits=1000.0))
    assert (result.width, result.height, result.format) == (7, 5, "exr")
    with OpenEXR.File(str(tmp_path / "white.exr")) as exr:
        header = dict(exr.header())  # the File's own dict is emptied on close
        chromaticities = header["chromaticities"]
        white = header["whiteLuminance"]
        pixels = exr.channels()["RGB"].pixels.copy()
    assert pixels.dtype == np.float16 and pixels.shape == (5, 7, 3)
    assert np.allclose(pixels, 203.0, rtol=1e-3)
    assert np.allclose(chromaticities, BT2020_CHROMATICITIES, atol=1e-6)
    assert white == 1.0
    assert result.max_nits == pytest.approx(203.0, rel=1e-4)


def test_convert_image_png_round_trips_through_pillow_metadata(tmp_path):
    src = tmp_path / "grey.jpg"
    Image.new("RGB", (6, 4), (128, 128, 128)).save(src, quality=100)
    dst = tmp_path / "grey.png"
    convert_image(src, dst, create_operator("bt2446a", peak_nits=1000.0))
    with Image.open(dst) as check:
        assert check.size == (6, 4)
    with pytest.raises(AlreadyHDRError, match="SMPTE2084"):
        read_sdr_image(dst)  # our own output is HDR: refused as input


def test_sixteen_bit_and_grey_and_alpha_inputs(tmp_path):
    grey16 = tmp_path / "g16.png"
    Image.fromarray(np.full((3, 3), 65535 // 2, np.uint16)).save(grey16)
    image = read_sdr_image(grey16)
    assert image.rgb.dtype == np.uint8 and image.rgb.shape == (3, 3, 3)
    assert np.all(image.rgb == 127) or np.all(image.rgb == 128)
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (2, 2), (1, 2, 3, 4)).save(rgba)
    image = read_sdr_image(rgba)
    assert image.rgb[0, 0].tolist() == [1, 2, 3] and "alpha" in image.warnings[0]


def test_bad_images(tmp_path: Path):
    empty = tmp_path / "e.png"
    empty.touch()
    with pytest.raises(CorruptStreamError, match="empty"):
        read_sdr_image(empty)
    src = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src)
    src.write_bytes(src.read_bytes()[:300])
    with pytest.raises(CorruptStreamError, match="truncated or corrupt"):
        read_sdr_image(src)


def test_sdr_cicp_tag_is_honoured(tmp_path):
    from service.colour.tags import Primaries, Transfer
    from service.images.png import chunk

    plain = tmp_path / "plain.png"
    Image.new("RGB", (2, 2), (128, 128, 128)).save(plain)
    assert read_sdr_image(plain).colour.transfer is Transfer.IEC61966_2_1  # untagged still: sRGB
    data = plain.read_bytes()
    ihdr_end = 8 + 12 + 13
    tagged = tmp_path / "bt709.png"
    tagged.write_bytes(data[:ihdr_end] + chunk(b"cICP", bytes((1, 1, 0, 1))) + data[ihdr_end:])
    colour = read_sdr_image(tagged).colour
    assert (colour.transfer, colour.primaries) == (Transfer.BT709, Primaries.BT709)


def test_images_route_errors_name_the_upload_and_pngs_carry_hdr_chunks(live):
    import httpx

    with httpx.Client(base_url=live.url, timeout=60) as client:
        named = client.post("/v1/images", files={"file": ("holiday.png", b"no pixels here", "image/png")})
        unnamed = client.post("/v1/images", content=b"no pixels here", headers={"Content-Type": "image/png"})
        wrong_part = client.post("/v1/images", files={"image": ("a.png", b"x" * 100, "image/png")})
        buffer = io.BytesIO()
        Image.new("RGB", (4, 2), (255, 255, 255)).save(buffer, format="PNG")
        good = client.post("/v1/images?peak_nits=800", content=buffer.getvalue())
    assert named.status_code == 422
    assert named.json()["detail"] == "input 'holiday.png' is not an image (PNG or JPEG)"
    assert unnamed.status_code == 422 and "'upload' is not an image" in unnamed.json()["detail"]
    assert ".part" not in named.text + unnamed.text
    assert wrong_part.status_code == 422
    assert "no 'file' part: 'image' carries a file" in wrong_part.json()["detail"]
    assert "'file' part (curl: -F file=@" in wrong_part.json()["detail"]
    assert good.status_code == 200, good.text
    mdcv, (cll, _) = _mdcv_clli(good.content)
    assert mdcv[8] == 800 * 10000 and cll == pytest.approx(800.0, rel=2e-3)


def test_ffmpeg_reads_the_png_hdr_chunks(tmp_path):
    # An independent reader: FFmpeg's PNG decoder (PyAV's build) turns cICP, mDCV and cLLI into frame tags
    # and side data exactly as it does for video, so players built on it see the same metadata.
    import av
    from av.sidedata.sidedata import Type

    path = tmp_path / "hdr.png"
    path.write_bytes(encode_pq_png(np.full((4, 6, 3), (520.0, 300.0, 20.0), np.float32), peak_nits=1000.0))
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.color_primaries, frame.color_trc) == (9, 16)
    cll, fall = struct.unpack("<2I", bytes(frame.side_data[Type.CONTENT_LIGHT_LEVEL]))
    assert cll == fall and 519 <= cll <= 520  # FFmpeg truncates the chunk's 0.0001 cd/m² units
    # AVMasteringDisplayMetadata: (num, den) for R, G, B x/y, white x/y, min, max luminance; has_* flags
    values = struct.unpack("<22i", bytes(frame.side_data[Type.MASTERING_DISPLAY_METADATA]))
    rationals = [values[i] / values[i + 1] for i in range(0, 20, 2)]
    p3_d65 = [0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290]
    assert rationals == pytest.approx([*p3_d65, 0.0001, 1000.0])
    assert values[20:] == (1, 1)
