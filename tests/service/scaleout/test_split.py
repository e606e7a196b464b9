"""The driver's two passes (plan, then stream the cut) against the one-pass whole cut, without a cluster."""

from pathlib import Path

import pytest

from service.errors import CorruptStreamError, EngineError, UnsupportedFormatError
from service.pipeline import ConvertOptions
from service.scaleout.split import plan_video, segment_inputs
from service.video.decode import VideoReader
from service.video.remux import cut_segments
from tests.adversarial.media import ffmpeg

from .conftest import gop_clip


def _open_gop_clip(path: Path) -> Path:
    x264 = ["-x264-params", "open-gop=1:keyint=25:min-keyint=25:scenecut=0", "-bf", "3"]
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=128x72:rate=25:duration=4", "-c:v", "libx264", *x264, str(path)
    )
    return path


@pytest.mark.parametrize(
    ("clip", "seconds"),
    [
        (lambda p: gop_clip(p, seconds=4.4, gop=25, audio=False), 1.0),  # a short tail merged into the last
        (lambda p: gop_clip(p, seconds=6.0, gop=5), 0.2),  # many segments, audio alongside
        (lambda p: gop_clip(p, seconds=2.0, gop=25), 10.0),  # one segment
        (_open_gop_clip, 1.0),  # a cut undone by an open GOP
    ],
    ids=["short-tail", "many-with-audio", "one", "open-gop"],
)
def test_plan_then_stream_equals_the_whole_cut(tmp_path, clip, seconds):
    src = clip(tmp_path / "src.mp4")
    with VideoReader(src, ConvertOptions().decode) as reader:
        whole = tuple(cut_segments(reader, seconds))  # one pass, every segment's bytes at once
    plan = plan_video(src, seconds, ConvertOptions())
    assert plan.segments == tuple(s.__class__(**{**s.__dict__, "data": b""}) for s in whole)
    assert tuple(segment_inputs(src, plan, ConvertOptions())) == whole


def test_segments_are_cut_when_asked_for(tmp_path):
    src = gop_clip(tmp_path / "src.mp4", seconds=4.0, audio=False)
    plan = plan_video(src, 1.0, ConvertOptions())
    inputs = segment_inputs(src, plan, ConvertOptions())
    first = next(inputs)
    assert first.index == 0 and first.data
    inputs.close()  # closes the input: the rest is never demuxed


def test_bad_input_fails_while_planning(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(CorruptStreamError, match=r"bad\.mp4"):
        plan_video(bad, 1.0, ConvertOptions())
    half = tmp_path / "half.mp4"
    half.write_bytes(gop_clip(tmp_path / "whole.mp4").read_bytes()[:20_000])
    with pytest.raises(CorruptStreamError):
        plan_video(half, 1.0, ConvertOptions())
    raw = tmp_path / "raw.h264"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x72:rate=25:duration=1", "-c:v", "libx264", str(raw))
    with pytest.raises(UnsupportedFormatError, match="without timestamps"):
        plan_video(raw, 1.0, ConvertOptions())


def test_an_input_changed_after_planning_fails_by_segment(tmp_path):
    src = gop_clip(tmp_path / "src.mp4", seconds=4.0, audio=False)
    plan = plan_video(src, 1.0, ConvertOptions())
    gop_clip(src, seconds=2.0, audio=False)
    with pytest.raises(EngineError, match=r"segment 2 \(2\.0-3\.0 s of 'src\.mp4'\) no longer demuxes"):
        list(segment_inputs(src, plan, ConvertOptions()))
    longer = tmp_path / "longer.mp4"
    plan = plan_video(gop_clip(longer, seconds=2.0, audio=False), 1.0, ConvertOptions())
    gop_clip(longer, seconds=4.0, audio=False)
    with pytest.raises(EngineError, match=r"segment 2 \(2\.0-3\.0 s of 'longer\.mp4'\) no longer demuxes"):
        list(segment_inputs(longer, plan, ConvertOptions()))
