"""The driver's first step: probe the input and cut it into segments that travel through Ray's object store.

The stream copy itself is :func:`service.video.remux.cut_segments` (demuxing only, each segment's packets in
a small in-memory MP4, so no filesystem is shared). What this adds is the single-process path's own checks
and choices, made once for the whole input before any task exists: the probe (size, codec, HDR refusal) and
which audio and subtitle streams the assembled output copies (:func:`service.pipeline.passthrough`).
"""

from dataclasses import dataclass
from pathlib import Path

from service.errors import InputError
from service.pipeline import ConvertOptions, passthrough
from service.video.decode import VideoInfo, VideoReader
from service.video.remux import SegmentInput, cut_segments


@dataclass(frozen=True)
class SplitVideo:
    """The probe of the input and its segments, in order."""

    info: VideoInfo
    segments: tuple[SegmentInput, ...]
    copy_streams: tuple[int, ...] = ()
    """Indices of the input's audio and subtitle streams to copy into the output."""
    warnings: tuple[str, ...] = ()
    """Streams that are dropped, as the in-process path reports them."""

    @property
    def frames(self) -> int:
        """Frames over all segments (one packet is one frame for every codec accepted)."""
        return sum(s.frames for s in self.segments)


def split_video(
    src: Path, segment_seconds: float, options: ConvertOptions, *, name: str | None = None
) -> SplitVideo:
    """Probe ``src`` and cut its video stream into segments of about ``segment_seconds``, demuxing only.

    The input is checked as the single-process path checks it, before anything is handed out: the probe
    (size, codec, HDR refusal) and the demuxed packet count against what the container declares.

    Raises
    ------
    InputError
        ``segment_seconds`` is not positive, or the input cannot be converted (the subclasses below).
    UnsupportedFormatError
        The video packets carry no timestamps (raw elementary streams): there is nothing to cut them by.
    CorruptStreamError
        The input is not media, truncated or corrupt.
    """
    if segment_seconds <= 0:
        raise InputError(f"segment_seconds {segment_seconds} is invalid; expected > 0")
    with VideoReader(src, options.decode, name=name) as reader:
        copied, dropped = passthrough(reader, options)
        segments = cut_segments(reader, segment_seconds)
        return SplitVideo(reader.info, segments, tuple(s.index for s in copied), tuple(dropped))
