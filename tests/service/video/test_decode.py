from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from av.video.reformatter import ColorPrimaries, Colorspace, ColorTrc

from service.colour.tags import Matrix, Primaries, Range, Transfer
from service.errors import AlreadyHDRError, CorruptStreamError, InputError, UnsupportedFormatError
from service.video.decode import DecodeOptions, VideoReader


def test_probe_defaults_hd_to_bt709_and_batches_keep_pts(clip_factory):
    path = clip_factory(width=1280, height=720, frames=5)
    with VideoReader(path) as reader:
        info = reader.info
        assert (info.width, info.height, info.frames, info.frame_rate) == (1280, 720, 5, Fraction(25))
        assert info.matrix is Matrix.BT709 and info.range is Range.MPEG
        assert info.colour.transfer is Transfer.BT709 and info.colour.primaries is Primaries.BT709
        batches = list(reader.batches(2))
        reader.check_complete()
    assert [b.rgb.shape[0] for b in batches] == [2, 2, 1]
    assert batches[0].rgb.dtype == np.uint8 and batches[0].rgb.shape[1:] == (720, 1280, 3)
    pts = [p for b in batches for p in b.pts]
    assert [float(p * info.time_base) for p in pts] == [0.0, 0.04, 0.08, 0.12, 0.16]


def test_probe_defaults_sd_to_bt601_and_honours_tags_and_overrides(clip_factory):
    with VideoReader(clip_factory("sd.mp4", width=64, height=48)) as reader:
        assert reader.info.matrix is Matrix.SMPTE170M
        assert reader.info.colour.primaries is Primaries.SMPTE170M
    tagged = clip_factory("tagged.mp4", colour={"colorspace": Colorspace.ITU709})
    with VideoReader(tagged) as reader:
        assert reader.info.matrix is Matrix.BT709
    with VideoReader(tagged, DecodeOptions(matrix=Matrix.SMPTE170M, range=Range.JPEG)) as reader:
        assert reader.info.matrix is Matrix.SMPTE170M and reader.info.range is Range.JPEG


def test_rgb_matches_the_source_colours(clip_factory):
    grey = np.full((48, 64, 3), 180, np.uint8)
    with VideoReader(clip_factory(rgb=grey, frames=2)) as reader:
        rgb = next(reader.batches(2)).rgb
    assert np.abs(rgb.astype(int) - 180).max() <= 2


def test_vfr_timestamps_survive(clip_factory):
    # steps of 1, 3, 7 ticks of 1/250 s; Matroska stores milliseconds
    path = clip_factory("vfr.mkv", frames=6, pts_step=[1, 3, 7])
    with VideoReader(path) as reader:
        pts = [p for b in reader.batches(4) for p in b.pts]
        seconds = [float(p * reader.info.time_base) for p in pts]
    assert np.diff(seconds) == pytest.approx([0.004, 0.012, 0.028, 0.004, 0.012])


@pytest.mark.parametrize("trc", [ColorTrc.SMPTE2084, ColorTrc.ARIB_STD_B67])
def test_hdr_input_is_refused(clip_factory, trc):
    path = clip_factory(colour={"color_trc": trc, "color_primaries": ColorPrimaries.BT2020})
    with pytest.raises(AlreadyHDRError, match="HDR already"):
        VideoReader(path)


def test_odd_size_is_refused_before_decoding(clip_factory):
    path = clip_factory("odd.mkv", codec="ffv1", pix_fmt="yuv444p", width=63, height=47)
    with pytest.raises(UnsupportedFormatError, match=r"63x47.*even"):
        VideoReader(path)


@pytest.mark.parametrize(("width", "height"), [(48, 32), (40, 64), (64, 8)])
def test_frames_too_small_for_the_encoders_are_refused(clip_factory, width, height):
    # libx265 aborts the whole process (heap corruption) on 34-48 px wide frames: refuse, never encode.
    path = clip_factory(f"tiny{width}.mp4", width=width, height=height, frames=2)
    with pytest.raises(UnsupportedFormatError, match="at least 64x16"):
        VideoReader(path)


def test_max_resolution_is_enforced(clip_factory):
    path = clip_factory(width=128, height=96)
    with pytest.raises(UnsupportedFormatError, match="limit is 64x64"):
        VideoReader(path, DecodeOptions(max_width=64, max_height=64))


def test_bad_files(tmp_path: Path, clip_factory):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(CorruptStreamError, match="empty"):
        VideoReader(empty)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptStreamError, match="not a readable video"):
        VideoReader(noise)
    with pytest.raises(InputError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")


def test_audio_only_is_refused(tmp_path, clip_factory):
    import av

    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(UnsupportedFormatError, match=r"no video stream.*audio-only"):
        VideoReader(path)


def test_truncated_mkv_is_reported(clip_factory):
    path = clip_factory("long.mkv", frames=50, width=128, height=96)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with VideoReader(path) as reader, pytest.raises(CorruptStreamError, match="truncated"):
        for _ in reader.batches(8):
            pass
        reader.check_complete()


def test_unknown_tags_fall_back_with_a_warning(clip_factory):
    path = clip_factory(width=1280, height=720, frames=2, colour={"color_primaries": 12, "colorspace": 0})
    with VideoReader(path) as reader:
        info = reader.info
    assert info.colour.primaries is Primaries.BT709  # P3-D65 (12) has no chromaticities here yet
    assert info.warnings == ("input primaries tag 12 is not supported; using BT709",)
    assert info.matrix is Matrix.BT709  # an RGB matrix tag on Y'CbCr pixels is ignored
