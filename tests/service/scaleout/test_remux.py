"""The segment path without a cluster: cut at keyframes, convert segments as a worker would, reassemble."""

import subprocess
import sys
from pathlib import Path

import pytest

from service.errors import EngineError
from service.pipeline import ConvertOptions
from service.scaleout.assemble import assemble
from service.scaleout.cluster import resolved_options
from service.scaleout.split import plan_video
from service.scaleout.task import SegmentJob, convert_segment
from tests.service.conftest import video_packets
from tests.service.test_pipeline import _check_hdr10

from .conftest import ROOT, SPEC, cut, decode, gop_clip, luma_psnr


def _convert_locally(src: Path, dst: Path, segment_seconds: float):  # type: ignore[no-untyped-def]
    split = cut(src, segment_seconds)
    job = SegmentJob(SPEC, resolved_options(ConvertOptions(), split, 1000.0, 1))
    outputs = (convert_segment(s.index, job, s.data) for s in split.segments)
    fmt = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}[dst.suffix]
    return split, assemble(src, dst, fmt, split, outputs, job.options.mastering)


def test_cuts_at_keyframes_and_merges_a_short_tail(tmp_path):
    src = gop_clip(tmp_path / "src.mp4", seconds=4.4, gop=25, audio=False)
    split = cut(src, 1.0)
    assert [s.start_s for s in split.segments] == [0.0, 1.0, 2.0, 3.0]  # 4.0-4.4 s is merged into the last
    assert [s.frames for s in split.segments] == [25, 25, 25, 35]
    assert split.segments[-1].end_s == pytest.approx(4.4)
    assert plan_video(src, 2.5, ConvertOptions()).segments[0].frames == 75  # the first keyframe past 2.5 s


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_segmented_equals_in_process(tmp_path, in_process, suffix):
    src = gop_clip(tmp_path / "src.mp4", seconds=4.0, gop=25)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / f"hdr{suffix}"
    split, assembled = _convert_locally(src, dst, 1.0)
    assert len(split.segments) == 4 and assembled.frames == 100
    reference = in_process(src, suffix)
    # Light is measured on the frames given to each encoder, so segmenting changes nothing: exactly equal.
    assert (assembled.light.max_cll, assembled.light.max_fall) == (reference.max_cll, reference.max_fall)
    result = reference.__class__(**{**reference.__dict__, "path": dst})
    _check_hdr10(dst, result, 100)
    ours, theirs = decode(dst), decode(reference.path)
    assert ours.pts_s == theirs.pts_s
    assert luma_psnr(ours, theirs) >= 40.0
    assert video_packets(dst, "audio") == video_packets(src, "audio")  # copied once, untouched
    assert sorted(p.name for p in out.iterdir()) == [dst.name]


def test_a_missing_frame_fails_and_leaves_nothing(tmp_path):
    src = gop_clip(tmp_path / "src.mp4", seconds=2.0, audio=False)
    split = cut(src, 1.0)
    job = SegmentJob(SPEC, resolved_options(ConvertOptions(), split, 1000.0, 1))
    outputs = [convert_segment(s.index, job, s.data) for s in split.segments]
    short = outputs[1].__class__(**{**outputs[1].__dict__, "frames": outputs[1].frames - 1})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EngineError, match=r"segment 1 \(1\.0-2\.0 s of 'src.mp4'\)"):
        assemble(src, out / "x.mp4", "mp4", split, [outputs[0], short], job.options.mastering)
    assert list(out.iterdir()) == []


def test_the_embedded_default_never_imports_ray():
    code = (
        "import sys, service.cli, service.pipeline, service.scaleout.cluster, service.scaleout.task; "
        "sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_an_open_gop_cut_is_undone(tmp_path):
    """x264's open GOPs: keyframes whose leading B-frames reference the GOP before cannot start a segment."""
    from tests.adversarial.media import ffmpeg

    src = tmp_path / "open.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=128x72:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-bf",
        "3",
        "-x264-params",
        "open-gop=1:keyint=25:min-keyint=25:scenecut=0",
        "-pix_fmt",
        "yuv420p",
        str(src),
    )
    split = cut(src, 1.0)
    # The keyframe at 3 s opens a GOP whose leading B-frames come after it: no cut there.
    assert [s.frames for s in split.segments] == [25, 25, 50]
    job = SegmentJob(SPEC, resolved_options(ConvertOptions(), split, 1000.0, 1))
    for segment in split.segments:  # each one decodes completely on its own
        assert convert_segment(segment.index, job, segment.data).frames == segment.frames
