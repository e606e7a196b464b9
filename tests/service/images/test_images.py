import struct
import zlib
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from service.colour.pq import eotf_inverse_st2084
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
    assert kinds == [b"IHDR", b"cICP", b"IDAT", b"IEND"]
    assert dict(chunks)[b"cICP"] == bytes((9, 16, 0, 1))
    width, height, depth, colour_type = struct.unpack(">IIBB", dict(chunks)[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (3, 1, 16, 2)
    raw = zlib.decompress(dict(chunks)[b"IDAT"])
    assert raw[0] == 0  # filter byte
    codes = np.frombuffer(raw[1:], ">u2").reshape(1, 3, 3)
    expected = np.rint(eotf_inverse_st2084(nits) * 65535)
    assert np.array_equal(codes, expected)
    assert codes[0, 0, 2] == round(0.5807 * 65535) or abs(int(codes[0, 0, 2]) - 0.58069 * 65535) < 5


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
