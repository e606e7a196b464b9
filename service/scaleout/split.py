"""The driver's first step: probe the input, check it and plan its segments, then hand them out one at a time.

The stream copy itself is :mod:`service.video.remux` (demuxing only, each segment's packets in a small
in-memory MP4, so no filesystem is shared). What this adds is the single-process path's own checks and
choices, made once for the whole input before any task exists: the probe (size, codec, HDR refusal), the
demuxed packet count against what the container declares, and which audio and subtitle streams the assembled
output copies (:func:`service.pipeline.passthrough`).

The driver reads the input twice so that it never holds more of it than a few segments:
:func:`plan_video` demuxes it to the end, checks it and decides the cuts, keeping only each segment's place
and frame count (:func:`~service.video.remux.plan_segments`); :func:`segment_inputs` demuxes it again and
cuts it the same way (:func:`~service.video.remux.cut_segments`), remuxing each segment when it is asked
for the next one, so segments are cut as the cluster takes them. Demuxing is a stream copy (~1 ms per second
of 1080p video, docs/SCALING.md), so the second pass costs far less than holding a film in memory would.
Both passes run the one cut, so they agree unless the input changed in between, which fails by segment.
"""

from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

from service.errors import EngineError, InputError
from service.pipeline import ConvertOptions, passthrough
from service.video.decode import VideoInfo, VideoReader
from service.video.remux import SegmentInput, cut_segments, plan_segments


@dataclass(frozen=True)
class SplitVideo:
    """The probe of the input and its segments, in order (a plan's segments carry no bytes)."""

    info: VideoInfo
    segment_seconds: float
    """The target segment length the cuts were made with."""
    segments: tuple[SegmentInput, ...]
    copy_streams: tuple[int, ...] = ()
    """Indices of the input's audio and subtitle streams to copy into the output."""
    warnings: tuple[str, ...] = ()
    """Streams that are dropped, as the in-process path reports them."""

    @property
    def frames(self) -> int:
        """Frames over all segments (one packet is one frame for every codec accepted)."""
        return sum(s.frames for s in self.segments)


def plan_video(
    src: Path, segment_seconds: float, options: ConvertOptions, *, name: str | None = None
) -> SplitVideo:
    """Probe and check ``src`` and decide its segments of about ``segment_seconds``, keeping no packet data.

    The checks are those of the single-process path, over the whole input, so bad input fails here, before
    any task exists. The segments' ``data`` is empty: :func:`segment_inputs` fills it in, one segment at a
    time. At most two segments' packets are held while planning.

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
        segments = plan_segments(reader, segment_seconds)
        return SplitVideo(
            reader.info, segment_seconds, segments, tuple(s.index for s in copied), tuple(dropped)
        )


def segment_inputs(
    src: Path, plan: SplitVideo, options: ConvertOptions, *, name: str | None = None
) -> Generator[SegmentInput]:
    """The planned segments of ``src`` with their bytes, in order, each cut when the caller asks for it.

    Holds two segments' packets at most. Close the iterator (or exhaust it) to close the input.

    Raises
    ------
    EngineError
        The input no longer cuts into the planned segments (it changed since :func:`plan_video`).
    CorruptStreamError
        The demuxer fails on the data.
    """
    with VideoReader(src, options.decode, name=name) as reader:
        planned = iter(plan.segments)
        for segment in cut_segments(reader, plan.segment_seconds):
            expected = next(planned, None)
            if expected != replace(segment, data=b""):
                raise _changed(expected or segment, reader.name)
            yield segment
        missing = next(planned, None)
        if missing is not None:
            raise _changed(missing, reader.name)


def _changed(segment: SegmentInput, name: str) -> EngineError:
    return EngineError(f"{segment.describe(name)} no longer demuxes as planned; was the input changed?")
