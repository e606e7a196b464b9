"""The driver's first step: probe the input, check it and plan its segments, then hand them out one at a time.

The stream copy itself is :mod:`service.video.remux` (demuxing only, each segment's packets in a small
in-memory MP4, so no filesystem is shared). What this adds is the single-process path's own checks and
choices, made once for the whole input before any task exists: the probe (size, codec, HDR refusal), the
demuxed packet count against what the container declares, and which audio and subtitle streams the assembled
output copies (:func:`service.pipeline.passthrough`).

The driver reads the input twice so that it never holds more of it than a few segments:
:func:`plan_video` demuxes it to the end, checks it and decides the cuts, keeping only each segment's place
and frame count; :func:`segment_inputs` demuxes it again and remuxes each planned segment when it is asked
for the next one, so segments are cut as the cluster takes them. Demuxing is a stream copy (~1 ms per second
of 1080p video, docs/SCALING.md), so the second pass costs far less than holding a film in memory would.
:func:`split_video` does both at once (every segment's bytes in memory), for measuring and testing the cut.

The cut itself is the keyframe rule of :mod:`service.video.remux`, used here through its private helpers
(``_Cutter``, ``_remux`` and two timestamp helpers), since its public ``cut_segments`` only cuts a whole input
at once. A public segment-by-segment cut in that module would replace these imports; the two paths are
tested to give identical segments, bytes included (tests/service/scaleout/test_split.py).
"""

from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

from service.errors import EngineError, InputError, UnsupportedFormatError
from service.pipeline import ConvertOptions, passthrough
from service.video.decode import Packet, PacketScan, VideoInfo, VideoReader
from service.video.errors import map_av_errors
from service.video.remux import SegmentInput, _Cutter, _end_seconds, _remux, _seconds, cut_segments


@dataclass(frozen=True)
class SplitVideo:
    """The probe of the input and its segments, in order (a plan's segments carry no bytes)."""

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


def _check(segment_seconds: float) -> None:
    if segment_seconds <= 0:
        raise InputError(f"segment_seconds {segment_seconds} is invalid; expected > 0")


def split_video(
    src: Path, segment_seconds: float, options: ConvertOptions, *, name: str | None = None
) -> SplitVideo:
    """Probe ``src`` and cut its video stream into segments of about ``segment_seconds``, all in memory.

    The same checks and cuts as :func:`plan_video`, with every segment's bytes at once: what the cut costs,
    measured whole (bench/scale.py), and the reference :func:`segment_inputs` is tested against.

    Raises
    ------
    InputError
        ``segment_seconds`` is not positive, or the input cannot be converted (see :func:`plan_video`).
    """
    _check(segment_seconds)
    with VideoReader(src, options.decode, name=name) as reader:
        copied, dropped = passthrough(reader, options)
        segments = cut_segments(reader, segment_seconds)
        return SplitVideo(reader.info, segments, tuple(s.index for s in copied), tuple(dropped))


def _planned(index: int, group: list[Packet]) -> SegmentInput:
    return SegmentInput(index, _seconds(group[0]), _end_seconds(group), len(group), b"")


def plan_video(
    src: Path, segment_seconds: float, options: ConvertOptions, *, name: str | None = None
) -> SplitVideo:
    """Probe and check ``src`` and decide its segments of about ``segment_seconds``, keeping no packet data.

    The checks are :func:`split_video`'s (those of the single-process path), over the whole input, so bad
    input fails here, before any task exists. The segments' ``data`` is empty: :func:`segment_inputs` fills
    it in, one segment at a time. At most two segments' packets are held while planning: a cut is final
    once the next one is made (the newest may still be undone by an open GOP or take a short tail).

    Raises
    ------
    InputError
        ``segment_seconds`` is not positive, or the input cannot be converted (the subclasses below).
    UnsupportedFormatError
        The video packets carry no timestamps (raw elementary streams): there is nothing to cut them by.
    CorruptStreamError
        The input is not media, truncated or corrupt.
    """
    _check(segment_seconds)
    with VideoReader(src, options.decode, name=name) as reader:
        copied, dropped = passthrough(reader, options)
        cutter = _Cutter(segment_seconds)
        planned: list[SegmentInput] = []
        packets = corrupt = 0
        first_s: float | None = None
        with map_av_errors("input", reader.name):
            for packet in reader.container.demux(reader.video_stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    raise UnsupportedFormatError(
                        f"input '{reader.name}' has video packets without timestamps (a raw stream?); it "
                        "cannot be cut into segments, convert it without Ray"
                    )
                packets += 1
                corrupt += bool(packet.is_corrupt)
                cutter.add(packet)
                while len(cutter.done) > 1:
                    group = cutter.done.pop(0)
                    if not planned:
                        first_s = min(_seconds(p) for p in group)
                    planned.append(_planned(len(planned), group))
        tail = cutter.finish()
        if tail and not planned:
            first_s = min(_seconds(p) for p in tail[0])
        planned += [_planned(len(planned) + i, group) for i, group in enumerate(tail)]
        end_s = planned[-1].end_s if planned else None
        reader.check_scan(PacketScan(packets, (end_s or 0.0) - (first_s or 0.0), end_s, corrupt, False))
        return SplitVideo(reader.info, tuple(planned), tuple(s.index for s in copied), tuple(dropped))


def segment_inputs(
    src: Path, plan: SplitVideo, options: ConvertOptions, *, name: str | None = None
) -> Generator[SegmentInput]:
    """The planned segments of ``src`` with their bytes, in order, each cut when the caller asks for it.

    Holds one segment's packets at a time. Close the iterator (or exhaust it) to close the input.

    Raises
    ------
    EngineError
        The input no longer demuxes into the planned segments (it changed since :func:`plan_video`).
    CorruptStreamError
        The demuxer fails on the data.
    """
    with VideoReader(src, options.decode, name=name) as reader:
        stream = reader.video_stream
        pending = iter(plan.segments)
        segment = next(pending, None)
        group: list[Packet] = []
        with map_av_errors("input", reader.name):
            packets = reader.container.demux(stream)
        while segment is not None:
            with map_av_errors("input", reader.name):
                packet = next(packets, None)
            if packet is None:
                break
            if packet.size == 0:
                continue
            group.append(packet)
            if len(group) < segment.frames:
                continue
            if _seconds(group[0]) != segment.start_s or _end_seconds(group) != segment.end_s:
                break
            data = _remux(stream, group, reader.name)
            group = []
            yield replace(segment, data=data)
            segment = next(pending, None)
        if segment is not None:
            raise EngineError(
                f"{segment.describe(reader.name)} no longer demuxes as planned; was the input changed?"
            )
