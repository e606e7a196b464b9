import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.errors import AlreadyHDRError, CorruptStreamError, JobCancelledError, UnsupportedFormatError
from service.operators import Operator, create_operator
from service.pipeline import ConversionResult, ConvertOptions, Progress, convert_video
from service.video.decode import VideoReader
from service.video.encode import EncodeOptions
from service.video.hdr10_metadata import unescape_rbsp

from .conftest import ffprobe, first_frame_side_data, reference_light_levels, video_packets


def master_light_levels(src: Path, operator: Operator, max_frames: int | None = None) -> tuple[float, float]:
    """(MaxCLL, MaxFALL) recomputed with NumPy on the frames the encoder is given, before 4:2:0 subsampling.

    Each pixel's light is max(R, G, B) of its 10-bit narrow-range PQ code (round(64 + 876 PQ)) decoded back
    to cd/m² (CTA-861.3 annex P), independent of service.video.light's table and kernel.
    """
    max_light = max_average = 0.0
    with VideoReader(src) as reader:
        for batch in reader.batches(4, max_frames=max_frames):
            nits = operator(batch.rgb, reader.info.colour).astype(np.float64)
            brightest = np.clip(np.nan_to_num(nits, nan=0.0, posinf=1e4).max(axis=-1), 0.0, 1e4)
            codes = np.rint(64 + 876 * eotf_inverse_st2084(brightest))
            light = eotf_st2084((codes - 64) / 876)
            max_light = max(max_light, float(light.max()))
            max_average = max(max_average, float(light.reshape(len(light), -1).mean(axis=1).max()))
    return max_light, max_average


def _check_master_light(
    result: ConversionResult, src: Path, operator: Operator, max_frames: int | None = None
) -> None:
    """The written values are the master's (within 1 %), and never above the mastering peak."""
    ref_cll, ref_fall = master_light_levels(src, operator, max_frames)
    peak = result.mastering.max_nits
    assert result.max_cll is not None and result.max_fall is not None
    assert result.max_cll <= peak and result.max_fall <= result.max_cll
    assert result.max_cll == pytest.approx(min(ref_cll, peak), rel=0.01, abs=1)
    assert result.max_fall == pytest.approx(min(ref_fall, peak), rel=0.01, abs=1)


def _check_hdr10(path: Path, result: ConversionResult, frames: int) -> None:
    info = ffprobe(path, "-show_streams", "-count_frames", "-select_streams", "v:0")
    stream = info["streams"][0]
    assert stream["pix_fmt"] == "yuv420p10le"
    assert stream["color_transfer"] == "smpte2084"
    assert stream["color_primaries"] == "bt2020"
    assert stream["color_space"] == "bt2020nc"
    assert stream["color_range"] == "tv"
    assert int(stream["nb_read_frames"]) == frames == result.frames
    side = first_frame_side_data(path)
    mastering = side["Mastering display metadata"]
    assert Fraction(mastering["max_luminance"]) == 1000
    assert float(Fraction(mastering["min_luminance"])) == pytest.approx(0.0001, abs=3e-5)  # AV1 stores 18.14
    assert float(Fraction(mastering["red_x"])) == pytest.approx(0.680, abs=1e-4)  # Display P3
    light = side["Content light level metadata"]
    assert (light["max_content"], light["max_average"]) == (result.max_cll, result.max_fall)
    assert _cll_in_bitstream(path) == {(result.max_cll, result.max_fall)}  # no placeholder left anywhere
    if path.suffix in (".mp4", ".mov", ".mkv"):  # container level too: mdcv/clli boxes, Matroska Colour
        stream_side = {sd["side_data_type"]: sd for sd in stream.get("side_data_list", [])}
        assert Fraction(stream_side["Mastering display metadata"]["max_luminance"]) == 1000
        box = stream_side["Content light level metadata"]
        assert (box["max_content"], box["max_average"]) == (result.max_cll, result.max_fall)


def _cll_in_bitstream(path: Path) -> set[tuple[int, int]]:
    """Every (MaxCLL, MaxFALL) written anywhere in the video bitstream: packets and hvcC/av1C."""
    found: set[tuple[int, int]] = set()

    def hevc_nals(data: bytes, size_len: int) -> list[bytes]:
        out, pos = [], 0
        while pos + size_len <= len(data):
            n = int.from_bytes(data[pos : pos + size_len], "big")
            out.append(data[pos + size_len : pos + size_len + n])
            pos += size_len + n
        return out

    def scan_hevc(nal: bytes) -> None:
        if (nal[0] >> 1) & 0x3F == 39:
            rbsp = unescape_rbsp(nal[2:])
            pos = 0
            while pos < len(rbsp) - 1:
                kind, size = rbsp[pos], rbsp[pos + 1]  # all x265 SEI here are < 255 bytes
                if kind == 144:
                    found.add(
                        (
                            int.from_bytes(rbsp[pos + 2 : pos + 4], "big"),
                            int.from_bytes(rbsp[pos + 4 : pos + 6], "big"),
                        )
                    )
                pos += 2 + size

    def scan_av1(data: bytes) -> None:
        pos = 0
        while pos < len(data):
            header = data[pos]
            pos += 1 + bool(header & 4)
            size = shift = 0
            while True:
                byte = data[pos]
                size |= (byte & 0x7F) << shift
                pos += 1
                shift += 7
                if not byte & 0x80:
                    break
            if (header >> 3) & 0xF == 5 and data[pos] == 1:
                found.add(
                    (
                        int.from_bytes(data[pos + 1 : pos + 3], "big"),
                        int.from_bytes(data[pos + 3 : pos + 5], "big"),
                    )
                )
            pos += size

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = bytes(stream.codec_context.extradata or b"")
        hevc = stream.codec_context.name == "hevc"
        if hevc:
            pos = 23
            for _ in range(extradata[22]):
                count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
                pos += 3
                for _ in range(count):
                    n = int.from_bytes(extradata[pos : pos + 2], "big")
                    scan_hevc(extradata[pos + 2 : pos + 2 + n])
                    pos += 2 + n
        else:
            scan_av1(extradata[4:])
        for packet in container.demux(stream):
            if packet.size:
                if hevc:
                    for nal in hevc_nals(bytes(packet), 4):
                        scan_hevc(nal)
                else:
                    scan_av1(bytes(packet))
    return found


def _no_leftovers(directory: Path, *expected: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(expected)


@pytest.mark.parametrize(
    ("codec", "suffix"),
    [("hevc", ".mp4"), ("av1", ".mkv"), ("hevc", ".mkv"), ("av1", ".mp4"), ("hevc", ".mov")],
)
def test_synthetic_clip_with_audio(tmp_path, clip_factory, codec, suffix):
    src = clip_factory(frames=20, width=96, height=64, audio=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / f"hdr{suffix}"
    seen: list[Progress] = []
    operator = create_operator("bt2446a", peak_nits=1000.0)
    result = convert_video(
        src,
        dst,
        operator,
        ConvertOptions(encode=EncodeOptions(codec=codec), batch_size=6),
        progress=seen.append,
    )
    _no_leftovers(out_dir, dst.name)
    _check_hdr10(dst, result, 20)
    _check_master_light(result, src, operator)
    assert result.duration_s == pytest.approx(0.8)
    assert [p.frames_done for p in seen if p.stage == "convert"] == [6, 12, 18, 20]
    assert seen[-1].stage == "finalize"
    # audio copied bit-exact, packet by packet
    assert video_packets(dst, "audio") == video_packets(src, "audio")
    assert set(result.timings) == {"decode", "operator", "colour", "encode", "finalize"}


def test_bt2408_white_is_203_nits_and_metadata_says_so(tmp_path, clip_factory):
    src = clip_factory(rgb=np.full((48, 64, 3), 255, np.uint8), frames=4)
    result = convert_video(src, tmp_path / "w.mp4", create_operator("bt2408", peak_nits=1000.0))
    assert result.max_cll == pytest.approx(203, abs=3) and result.max_fall == pytest.approx(203, abs=3)


def test_light_is_the_masters_not_the_decoders(tmp_path, clip_factory):
    # One-pixel saturated stripes: 4:2:0 chroma reconstructed from them overshoots the luma far above the
    # operator's output (a decoder measured 778 cd/m² for a 203 cd/m² white this way). The metadata must
    # describe the frames given to the encoder instead, and stay within the mastering peak.
    stripes = np.zeros((48, 64, 3), np.uint8)
    stripes[:, 0::4] = (255, 0, 0)
    stripes[:, 1::4] = (0, 0, 255)
    stripes[:, 2::4] = 255
    src = clip_factory(rgb=stripes, frames=4, codec="libx264rgb", pix_fmt="rgb24")
    for name, white in (("bt2408", 203), ("bt2446a", 1000)):
        operator = create_operator(name, peak_nits=1000.0)
        result = convert_video(src, tmp_path / f"{name}.mp4", operator)
        decoded_cll, _, _ = reference_light_levels(tmp_path / f"{name}.mp4")
        _check_master_light(result, src, operator)
        assert result.max_cll == pytest.approx(white, abs=2)
        assert decoded_cll > 2 * white  # what the old decode-and-measure pass would have written
        assert result.warnings == ()


def test_cancel_leaves_nothing(tmp_path, clip_factory):
    src = clip_factory(frames=20)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cancel = threading.Event()

    def on_progress(p: Progress) -> None:
        cancel.set()

    with pytest.raises(JobCancelledError):
        convert_video(
            src,
            out_dir / "x.mp4",
            create_operator("bt2408", peak_nits=1000.0),
            ConvertOptions(batch_size=4),
            progress=on_progress,
            cancel=cancel,
        )
    _no_leftovers(out_dir)


def test_failures_leave_nothing_and_keep_an_existing_output(tmp_path, clip_factory):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "x.mkv"
    dst.write_bytes(b"previous result")
    src = clip_factory("long.mkv", frames=40)
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CorruptStreamError, match="truncated"):
        convert_video(src, dst, create_operator("bt2408", peak_nits=1000.0))
    _no_leftovers(out_dir, "x.mkv")
    assert dst.read_bytes() == b"previous result"


def test_av1_to_mov_is_refused_before_work(tmp_path, clip_factory):
    with pytest.raises(UnsupportedFormatError, match="mov"):
        convert_video(
            clip_factory(),
            tmp_path / "x.mov",
            create_operator("bt2408", peak_nits=1000.0),
            ConvertOptions(encode=EncodeOptions(codec="av1")),
        )


def test_hdr_input_is_refused(tmp_path):
    # our own output is the most convincing HDR input
    from av.video.reformatter import ColorTrc

    from .conftest import make_clip

    src = make_clip(tmp_path / "pq.mp4", colour={"color_trc": ColorTrc.SMPTE2084})
    with pytest.raises(AlreadyHDRError):
        convert_video(src, tmp_path / "x.mp4", create_operator("bt2408", peak_nits=1000.0))


@pytest.mark.data
def test_carphone_full_clip_hevc(tmp_path, data_video):
    src = data_video / "carphone_pristine.mp4"
    dst = tmp_path / "carphone.mp4"
    operator = create_operator("bt2446a", peak_nits=1000.0)
    result = convert_video(src, dst, operator)
    _check_hdr10(dst, result, 120)
    _check_master_light(result, src, operator)
    info = ffprobe(dst, "-show_streams", "-select_streams", "v:0")["streams"][0]
    assert float(info["duration"]) == pytest.approx(4.004, abs=0.04)
    assert info["codec_tag_string"] == "hvc1"


@pytest.mark.data
def test_flickering_ref_720p_av1_first_frames(tmp_path, data_video):
    src = data_video / "flickering_ref.mp4"
    dst = tmp_path / "flicker.mkv"
    operator = create_operator("inverse_reinhard", peak_nits=1000.0)
    result = convert_video(
        src, dst, operator, ConvertOptions(encode=EncodeOptions(codec="av1"), max_frames=12)
    )
    assert (result.width, result.height) == (1280, 720)
    _check_hdr10(dst, result, 12)
    _check_master_light(result, src, operator, max_frames=12)
    with av.open(str(dst)) as container:
        assert container.streams.video[0].time_base is not None


@pytest.mark.data
def test_ferris_bt2446a_light_stays_within_the_master(tmp_path, data_video):
    # The clip of issue 13: decoded and re-measured, its bt2446a output reached MaxCLL 1604 against a
    # 1000 cd/m² master (4:2:0 overshoot at saturated edges). Every frame, with the shipped defaults.
    src = data_video / "aliasing_ferris-ref.mp4"
    dst = tmp_path / "ferris.mp4"
    operator = create_operator("bt2446a", peak_nits=1000.0)
    result = convert_video(src, dst, operator)
    _check_hdr10(dst, result, 60)
    _check_master_light(result, src, operator)
    assert result.max_cll <= 1000


def test_rotation_sar_vfr_and_subtitles_survive(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    src = tmp_path / "rot.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.sample_aspect_ratio = Fraction(4, 3)
        stream.codec_context.time_base = Fraction(1, 100)
        stream.set_display_rotation(90)
        pts = 0
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 100)
            pts += (4, 12)[i % 2]  # variable frame rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nHello\n\n2\n00:00:00,300 --> 00:00:00,600\nWorld\n")
    with_subs = tmp_path / "subs.mkv"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(src),
            "-i",
            str(srt),
            "-map",
            "0",
            "-map",
            "1",
            "-c",
            "copy",
            "-metadata:s:s:0",
            "language=eng",
            str(with_subs),
        ],
        check=True,
    )
    for source, dst in ((src, tmp_path / "out.mp4"), (with_subs, tmp_path / "out.mkv")):
        result = convert_video(source, dst, create_operator("bt2408", peak_nits=1000.0))
        with av.open(str(source)) as c:
            src_frames = list(c.decode(video=0))
            src_times = [float(f.time) for f in src_frames]
            src_rotation = src_frames[0].rotation  # 90 from MP4; Debian's ffmpeg 5.1 drops it in MKV
        with av.open(str(dst)) as c:
            frames = list(c.decode(video=0))
            assert [round(float(f.time), 3) for f in frames] == [round(t, 3) for t in src_times]
            assert frames[0].rotation == src_rotation
            assert c.streams.video[0].sample_aspect_ratio == Fraction(4, 3)
        assert result.warnings == ()
    assert src_rotation == 0 and frames[0].rotation == 0  # the MKV leg
    streams = ffprobe(tmp_path / "out.mkv", "-show_streams")["streams"]
    assert [s["codec_name"] for s in streams] == ["hevc", "subrip"]
    assert streams[1]["tags"]["language"] == "eng"
    # MP4 cannot hold SubRip: skipped with a warning, not a failure
    result = convert_video(with_subs, tmp_path / "subs_out.mp4", create_operator("bt2408", peak_nits=1000.0))
    assert len(result.warnings) == 1 and "subtitle stream #1" in result.warnings[0]


def test_extra_video_streams_are_dropped_with_a_warning(tmp_path, clip_factory):
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    src = clip_factory(frames=5)
    two = tmp_path / "two.mkv"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(src),
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=32x32:rate=1:duration=1",
            "-map",
            "0",
            "-map",
            "1:v",
            "-c:v:0",
            "copy",
            "-c:v:1",
            "mjpeg",
            str(two),
        ],
        check=True,
    )
    result = convert_video(two, tmp_path / "out.mkv", create_operator("bt2408", peak_nits=1000.0))
    assert result.warnings == ("video stream #1 (mjpeg) is not converted or copied; dropped",)
    assert [s["codec_name"] for s in ffprobe(tmp_path / "out.mkv", "-show_streams")["streams"]] == ["hevc"]


def test_concurrent_conversions_in_worker_threads(tmp_path, clip_factory):
    # The REST workers call convert_video from threads: no shared state may leak between jobs.
    sources = [
        clip_factory(f"s{i}.mp4", frames=10, rgb=np.full((48, 64, 3), v, np.uint8))
        for i, v in enumerate((255, 60))
    ]
    results: dict[int, ConversionResult] = {}
    errors: list[BaseException] = []

    def job(i: int) -> None:
        try:
            codec = ("hevc", "av1")[i]
            results[i] = convert_video(
                sources[i],
                tmp_path / f"o{i}.mkv",
                create_operator("bt2408", peak_nits=1000.0),
                ConvertOptions(encode=EncodeOptions(codec=codec)),
            )
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results[0].max_cll == pytest.approx(204, abs=2)  # white -> 203 cd/m²
    assert results[1].max_cll < 20  # dark grey stays dark: no leakage from the other job


def test_interlaced_input_is_reported(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    src = tmp_path / "il.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=25:duration=0.2",
            "-c:v",
            "libx264",
            "-flags",
            "+ildct+ilme",
            "-x264opts",
            "tff=1",
            "-pix_fmt",
            "yuv420p",
            str(src),
        ],
        check=True,
    )
    result = convert_video(src, tmp_path / "o.mkv", create_operator("bt2408", peak_nits=1000.0))
    assert result.warnings == ("input is interlaced; frames are converted as progressive (no deinterlacing)",)
