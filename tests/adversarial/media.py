"""Bad (and awkward but valid) media, generated at test time into a tmp dir: nothing binary is committed.

Each builder takes a scratch directory and returns the bytes to upload. They start from the service tests'
``make_clip`` (PyAV) or Debian's ``ffmpeg`` CLI and then damage, patch or re-wrap the result, so every case
is reproducible from this file alone.
"""

import io
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import make_clip

type Builder = Callable[[Path], bytes]
"""Makes one case's upload in a scratch directory."""

W, H = 64, 48
"""Smallest comfortable clip: the service refuses frames narrower than 64 px (libx265 heap corruption)."""


def ffmpeg(*args: str) -> None:
    """Run Debian's ffmpeg quietly (skips the test when it is not installed)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (apt-get install -y ffmpeg)")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def clip(tmp: Path, name: str = "clip.mp4", **kwargs: object) -> bytes:
    """A small valid clip (64x48, 6 frames unless overridden) as bytes."""
    kwargs.setdefault("frames", 6)
    return make_clip(tmp / name, **kwargs).read_bytes()  # type: ignore[arg-type]


def lavfi(tmp: Path, name: str, source: str, *out_args: str) -> bytes:
    """Render an ffmpeg lavfi source (``testsrc=...``) with the given output options."""
    path = tmp / name
    ffmpeg("-f", "lavfi", "-i", source, *out_args, str(path))
    return path.read_bytes()


def half(data: bytes) -> bytes:
    """The first half of a file: what an interrupted upload or copy leaves."""
    return data[: len(data) // 2]


def random_bytes(_: Path) -> bytes:
    """Noise that no demuxer recognises."""
    return np.random.default_rng(6).integers(0, 256, 40_000, dtype=np.uint8).tobytes()


def text_as_mp4(_: Path) -> bytes:
    """A text file someone renamed to .mp4."""
    return b"These are my holiday notes, not a video.\n" * 200


def truncated_mp4_moov_at_end(tmp: Path) -> bytes:
    """PyAV writes ``moov`` after ``mdat``: cut in half, the index is gone."""
    return half(clip(tmp, frames=30))


def truncated_mp4_faststart(tmp: Path) -> bytes:
    """``moov`` first: the index survives but points past the end of the data."""
    src = make_clip(tmp / "src.mp4", frames=30)
    fast = tmp / "fast.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(fast))
    return half(fast.read_bytes())


def truncated_mkv(tmp: Path) -> bytes:
    """Matroska cut in half decodes short without any FFmpeg error; only the declared duration tells."""
    return half(clip(tmp, "clip.mkv", frames=40))


def corrupt_packet(tmp: Path) -> bytes:
    """An intact Matroska file whose 15th video packet has its second half scrambled."""
    src = make_clip(tmp / "src.mkv", frames=30)
    dst = tmp / "corrupt.mkv"
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        for index, packet in enumerate(p for p in inp.demux(stream) if p.size):
            if index == 15:
                data = bytearray(bytes(packet))
                for i in range(len(data) // 2, len(data)):
                    data[i] ^= 0xA5
                damaged = av.Packet(bytes(data))
                damaged.pts, damaged.dts, damaged.time_base = packet.pts, packet.dts, packet.time_base
                packet = damaged
            packet.stream = target
            out.mux(packet)
    return dst.read_bytes()


def audio_only(tmp: Path) -> bytes:
    """An AAC track in MP4 with no video stream."""
    path = tmp / "audio.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path.read_bytes()


def still(fmt: str, width: int = W, height: int = H) -> bytes:
    """One PNG or JPEG picture."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def mjpeg_single_frame_avi(tmp: Path) -> bytes:
    """A one-frame Motion-JPEG video: a real video container, however short."""
    return lavfi(tmp, "one.avi", f"testsrc=size={W}x{H}:rate=10", "-frames:v", "1", "-c:v", "mjpeg")


def patch_avi_size(data: bytes, old: tuple[int, int], new: tuple[int, int]) -> bytes:
    """Rewrite the frame size in an AVI's ``avih`` and ``strf`` headers (same length: 32-bit fields)."""
    before, after = struct.pack("<II", *old), struct.pack("<II", *new)
    assert data.count(before) == 2, "expected the size in avih and strf"
    return data.replace(before, after)


def declared_size(width: int, height: int) -> Builder:
    """A ~15 KB raw-video AVI whose headers declare ``width`` x ``height`` (the frames are 64x48)."""

    def build(tmp: Path) -> bytes:
        data = clip(tmp, "raw.avi", codec="rawvideo", frames=2)
        return patch_avi_size(data, (W, H), (width, height))

    return build


def tiny_4k_bomb(tmp: Path) -> bytes:
    """A ~4 KB H.264 file of real 4096x2304 black frames: tiny upload, 28 MB per decoded frame."""
    black = np.zeros((2304, 4096, 3), np.uint8)
    return clip(tmp, frames=2, width=4096, height=2304, rgb=black)


def raw_h264(tmp: Path, seconds: float, size: str = f"{W}x{H}") -> bytes:
    """An Annex B elementary stream: no container, so no declared duration or frame count."""
    return lavfi(
        tmp,
        f"raw{size}.h264",
        f"testsrc=size={size}:rate=25:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "h264",
    )


def high_frame_rate(tmp: Path) -> bytes:
    """One second of 5000 fps in MP4: a short, honest duration and an extreme frame count."""
    return lavfi(
        tmp,
        "fast.mp4",
        f"color=size={W}x{H}:rate=5000:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    )


def truncated_raw_h264(tmp: Path) -> bytes:
    """A raw stream cut mid-frame: nothing declares its length, but the last frame decodes only in part."""
    data = raw_h264(tmp, 1.0)
    return data[: int(len(data) * 0.73)]


def size_change(tmp: Path) -> bytes:
    """Two Annex B streams back to back: 64x48, then 128x96 (legal in a raw stream; we refuse it)."""
    return raw_h264(tmp, 0.2) + raw_h264(tmp, 0.2, "128x96")


def no_frames(tmp: Path) -> bytes:
    """An MP4 cut to zero frames: a valid, tiny container with nothing in it."""
    src = make_clip(tmp / "src.mp4", frames=2)
    empty = tmp / "empty.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-frames:v", "0", str(empty))
    return empty.read_bytes()


def timestamp_gap(tmp: Path) -> bytes:
    """Three frames, the third a day after the second: a tiny file declaring a huge duration."""
    return clip(tmp, "gap.mkv", frames=3, pts_step=[1, 10 * 25 * 86400])


def vfr(tmp: Path) -> bytes:
    """Variable frame rate: frame intervals alternate 40 ms and 120 ms."""
    return clip(tmp, "vfr.mkv", frames=8, pts_step=[4, 12])


def negative_timestamps(tmp: Path) -> bytes:
    """A clip shifted to start at -1 s (what edit lists and cut streams produce)."""
    src = make_clip(tmp / "src.mp4", frames=6)
    shifted = tmp / "negative.mkv"
    ffmpeg("-i", str(src), "-c", "copy", "-output_ts_offset", "-1", str(shifted))
    return shifted.read_bytes()


def rotated(tmp: Path) -> bytes:
    """A phone-style clip: 90 degree display matrix side data on the video track."""
    path = tmp / "rotated.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.set_display_rotation(90)
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()


def interlaced(tmp: Path) -> bytes:
    """Top-field-first interlaced H.264 (converted as progressive; see docs/RELIABILITY.md)."""
    return lavfi(
        tmp,
        "interlaced.mp4",
        f"testsrc=size={W}x{H}:rate=25:duration=0.2",
        "-c:v",
        "libx264",
        "-flags",
        "+ildct+ilme",
        "-x264opts",
        "tff=1",
        "-pix_fmt",
        "yuv420p",
    )


def unknown_codec(tmp: Path) -> bytes:
    """FFV1 in Matroska with its codec id rewritten to one nobody knows."""
    return clip(tmp, "ffv1.mkv", codec="ffv1").replace(b"V_FFV1", b"V_QQQQ")


def animated_gif(tmp: Path) -> bytes:
    """A five-frame palette GIF: a video in all but name."""
    return lavfi(tmp, "anim.gif", f"testsrc=size={W}x{H}:rate=10:duration=0.5")


def png_bomb(width: int = 16384, height: int = 16384) -> bytes:
    """A ~33 KB 1-bit grey PNG that decodes to ``width`` x ``height`` (805 MB as RGB)."""
    row = b"\x00" + bytes((width + 7) // 8)
    idat = zlib.compress(row * height, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def pq_png() -> bytes:
    """A PNG carrying a cICP chunk that says BT.2020 + PQ: HDR already."""
    data = still("PNG")
    cicp = b"cICP" + bytes((9, 16, 0, 1))
    chunk = struct.pack(">I", 4) + cicp + struct.pack(">I", zlib.crc32(cicp))
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]
