from fractions import Fraction

import av
import numpy as np
import pytest

from service.colour.kernels import nits_to_yuv420p10
from service.errors import InputError, UnsupportedFormatError
from service.video.encode import EncodeOptions, HDR10Writer, container_format, encoder_params
from service.video.frames import yuv420p10_planes
from service.video.hdr10_metadata import HDR10Metadata


def _encode_flat(path, codec, nits, frames):
    planes = nits_to_yuv420p10(np.full((64, 96, 3), nits, np.float32))
    with HDR10Writer(
        path,
        format=container_format(path),
        width=96,
        height=64,
        time_base=Fraction(1, 25),
        frame_rate=Fraction(25),
        options=EncodeOptions(codec=codec, crf=10),
        metadata=HDR10Metadata(),
    ) as writer:
        for i in range(frames):
            writer.write(planes, i)


@pytest.mark.parametrize(("codec", "suffix"), [("hevc", ".mp4"), ("av1", ".mkv")])
def test_flat_203_nits_grey_decodes_to_code_573(tmp_path, codec, suffix):
    path = tmp_path / f"grey{suffix}"
    _encode_flat(path, codec, 203.0, 3)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        y, u, v = yuv420p10_planes(frame)
        assert np.unique(y).tolist() == [573]
        assert np.unique(u).tolist() == [512] and np.unique(v).tolist() == [512]


@pytest.mark.parametrize("frames", [1, 2])
def test_one_and_two_frame_hevc_mp4_mux_cleanly(tmp_path, frames):
    # libx265 returns dts > pts on tiny encodes; the writer clamps them so MP4 muxing succeeds.
    path = tmp_path / "tiny.mp4"
    _encode_flat(path, "hevc", 100.0, frames)
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames


def test_x265_lookahead_is_bounded_for_the_fast_presets_only():
    def x265(**kwargs):  # type: ignore[no-untyped-def]
        joined = encoder_params(EncodeOptions(**kwargs), HDR10Metadata(), keyint=50)["x265-params"]
        return dict(item.split("=", 1) for item in joined.split(":") if "=" in item)

    assert {k: x265()[k] for k in ("rc-lookahead", "bframes")} == {"rc-lookahead": "8", "bframes": "3"}
    assert x265(preset="fast")["rc-lookahead"] == "8"
    assert "rc-lookahead" not in x265(preset="slow") and "bframes" not in x265(preset="ultrafast")
    mine = x265(params={"bframes": "6"})  # a caller's own B-frames take the lookahead with them
    assert mine["bframes"] == "6" and "rc-lookahead" not in mine


def test_options_and_params():
    params = encoder_params(EncodeOptions(params={"aq-mode": "3"}), HDR10Metadata(), keyint=50)
    assert params["preset"] == "veryfast" and params["crf"] == "20"
    assert ":keyint=50" in params["x265-params"] and params["x265-params"].endswith("aq-mode=3")
    with pytest.raises(InputError, match="crf 70"):
        EncodeOptions(codec="av1", crf=70)
    with pytest.raises(InputError, match="codec 'vp9'"):
        EncodeOptions(codec="vp9")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"suffix '\.avi'"):
        container_format(__import__("pathlib").Path("x.avi"))


def test_av1_in_mov_is_refused_clearly(tmp_path):
    with pytest.raises(UnsupportedFormatError, match=r"av1 video cannot be written to \.mov"):
        _encode_flat(tmp_path / "x.mov", "av1", 100.0, 1)
