"""Stream copy for segment-parallel conversion: cut a video at keyframes, and concatenate encoded segments.

Nothing here decodes or encodes: packets only move between containers. :func:`cut_segments` demuxes an
opened input's video stream and cuts it at keyframes into segments of about ``segment_seconds``, handing out
each segment as soon as its cut is final, so whoever takes them one at a time holds two segments' packets at
most, and the whole cut is ``tuple(cut_segments(...))``. Each segment's packets are remuxed, unchanged, into a
small in-memory MP4 (PyAV writes to ``BytesIO``) that carries the codec parameters with them, so a worker on
another machine gets a complete, decodable file and no shared filesystem is needed. MP4 keeps the stream's
time base (multiplied up to at least 10000 ticks per second, exactly as the single-process output does), so
every frame keeps its timestamp; codecs MP4 cannot hold fall back to Matroska (milliseconds).
:func:`plan_segments` makes the same cuts without the remux and keeps no packet data: where the segments
are, to check an input to its end before any of it is handed out.

A cut is only kept where decoding can restart: at a keyframe that no later packet displays before (an open
GOP's leading pictures reference the previous GOP, so a cut before them is undone), and a last segment
shorter than half the target is merged into the one before it.

:class:`SegmentConcat` writes encoded segments, in order, into one file with the audio and subtitle streams
copied once from the input. Every segment starts on an IDR with identical encoder settings and parameter
sets, so their packets form one valid stream. What to cut, where the segments are converted and how the
result is finished is the business of :mod:`service.scaleout`, which calls this module.
"""

import contextlib
import io
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import av.container

from service.errors import UnsupportedFormatError
from service.video.decode import Packet, PacketScan, Stream, VideoReader
from service.video.encode import add_copied_streams, copy_stream_properties
from service.video.errors import map_av_errors
from service.video.mp4_boxes import without_hdr10_boxes

SEGMENT_FORMAT = "mp4"
"""Container of segments in flight, both ways: keeps the source's time base and holds HEVC and AV1."""
SEGMENT_SUFFIX = ".mp4"
_FALLBACK_FORMAT = "matroska"


@dataclass(frozen=True)
class SegmentInput:
    """One segment of the input: its compressed video in a small container, and where it sits in time."""

    index: int
    start_s: float
    """Presentation time of its first frame, seconds on the input's clock."""
    end_s: float
    """End of its last frame, seconds."""
    frames: int
    data: bytes
    """A complete container (MP4, else Matroska) holding only this segment's video packets."""

    def describe(self, name: str) -> str:
        """How messages name the segment: ``segment 3 (30.0-40.0 s of 'film.mp4')``."""
        return f"segment {self.index} ({self.start_s:.1f}-{self.end_s:.1f} s of '{name}')"


def _seconds(packet: Packet) -> float:
    return float((packet.pts or 0) * packet.time_base)


def _end_seconds(packets: Sequence[Packet]) -> float:
    last = max(packets, key=lambda p: p.pts or 0)
    return float(((last.pts or 0) + (last.duration or 0)) * last.time_base)


class _Cutter:
    """Groups demuxed packets into segments; a cut is confirmed by the first packet displayed after it."""

    def __init__(self, segment_s: float) -> None:
        self.segment_s = segment_s
        self.done: list[list[Packet]] = []
        self.current: list[Packet] = []
        self.unconfirmed = False
        """The cut before ``current`` has seen no packet displayed after its keyframe yet."""

    def add(self, packet: Packet) -> None:
        if self.unconfirmed:
            cut_pts = self.current[0].pts or 0
            if (packet.pts or 0) < cut_pts:  # a leading picture: the keyframe opened an open GOP
                self.current = self.done.pop() + self.current
                self.unconfirmed = False
            elif (packet.pts or 0) > cut_pts:
                self.unconfirmed = False
        if (
            packet.is_keyframe
            and self.current
            and not self.unconfirmed
            and _seconds(packet) - _seconds(self.current[0]) >= self.segment_s
        ):
            self.done.append(self.current)
            self.current = []
            self.unconfirmed = True
        self.current.append(packet)

    def finish(self) -> list[list[Packet]]:
        segments = [*self.done, self.current] if self.current else list(self.done)
        if len(segments) > 1 and _end_seconds(segments[-1]) - _seconds(segments[-1][0]) < self.segment_s / 2:
            tail = segments.pop()
            segments[-1] = segments[-1] + tail
        return segments


def _remux(stream: Stream, packets: Sequence[Packet], name: str) -> bytes:
    """The packets, unchanged, in a fresh in-memory container with ``stream``'s codec parameters."""
    codec = stream.codec_context.name if stream.codec_context is not None else ""
    buffer = io.BytesIO()
    with map_av_errors("input", name):
        probe = av.open(io.BytesIO(), "w", format=SEGMENT_FORMAT)
        fmt = SEGMENT_FORMAT if codec in probe.supported_codecs else _FALLBACK_FORMAT
        probe.close()
        with av.open(buffer, "w", format=fmt) as out:
            target = out.add_stream_from_template(stream)
            for packet in packets:
                packet.stream = target
                out.mux(packet)
    return buffer.getvalue()


def _groups(reader: VideoReader, segment_seconds: float) -> Iterator[list[Packet]]:
    """The video packets of ``reader`` in segments, each as soon as no later packet can change its cut.

    A cut is final once the next one is made (the newest may still be undone by an open GOP or take a short
    tail), so at most two segments' packets are held. The demuxed packets are checked against what the
    container declares, as the single-process path checks its decoded frames, before the last one or two
    segments are handed out.
    """
    cutter = _Cutter(segment_seconds)
    packets = corrupt = 0
    first_s: float | None = None
    with map_av_errors("input", reader.name):
        demuxed = reader.container.demux(reader.video_stream)
    while True:
        with map_av_errors("input", reader.name):
            packet = next(demuxed, None)
        if packet is None:
            break
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
            if first_s is None:
                first_s = min(_seconds(p) for p in group)
            yield group
    tail = cutter.finish()
    if tail and first_s is None:
        first_s = min(_seconds(p) for p in tail[0])
    end_s = _end_seconds(tail[-1]) if tail else None
    reader.check_scan(
        PacketScan(packets, (end_s or 0.0) - (first_s or 0.0), end_s, corrupt, stopped_early=False)
    )
    yield from tail


def _segment(index: int, group: Sequence[Packet], data: bytes) -> SegmentInput:
    return SegmentInput(index, _seconds(group[0]), _end_seconds(group), len(group), data)


def plan_segments(reader: VideoReader, segment_seconds: float) -> tuple[SegmentInput, ...]:
    """Where :func:`cut_segments` cuts the video stream of ``reader``, checked to its end; no data kept.

    The segments are those :func:`cut_segments` yields, with empty ``data``: no packet is remuxed, and at
    most two segments' packets are held at a time.

    Raises
    ------
    UnsupportedFormatError
        The video packets carry no timestamps (raw elementary streams): there is nothing to cut them by.
    CorruptStreamError
        The input is truncated or corrupt.
    """
    return tuple(_segment(i, group, b"") for i, group in enumerate(_groups(reader, segment_seconds)))


def cut_segments(reader: VideoReader, segment_seconds: float) -> Generator[SegmentInput]:
    """Cut the video stream of ``reader`` into segments of about ``segment_seconds``, one at a time.

    Each segment is demuxed, remuxed and yielded once its cut is final, so the caller takes them as it needs
    them and at most two segments' packets are held; ``tuple(cut_segments(...))`` is the whole cut. The
    input is checked as :func:`plan_segments` checks it, before its last segment is yielded.

    Raises
    ------
    UnsupportedFormatError
        The video packets carry no timestamps (raw elementary streams): there is nothing to cut them by.
    CorruptStreamError
        The input is truncated or corrupt.
    """
    for index, group in enumerate(_groups(reader, segment_seconds)):
        segment = _segment(index, group, _remux(reader.video_stream, group, reader.name))
        group.clear()  # only this segment's bytes stay while the caller has it
        yield segment


class SegmentConcat:
    """One output file: the encoded segments' video, in order, plus audio and subtitles copied once.

    The video stream takes its parameters from the first segment. The copied streams are demuxed from the
    input alongside, up to the end of each segment written, so the muxer interleaves them without holding a
    whole film's audio.

    Raises
    ------
    OutputError
        If the file cannot be written.
    """

    def __init__(
        self, path: Path, *, format: str, first_segment: bytes, source: Path, copy_streams: Sequence[int]
    ) -> None:
        self.path = path
        self.frames = 0
        self._last_dts: int | None = None
        with map_av_errors("output", path.name):
            self.container: av.container.OutputContainer = av.open(str(path), "w", format=format)
        try:
            plain = io.BytesIO(without_hdr10_boxes(first_segment))
            with map_av_errors("output", path.name), av.open(plain) as seg:
                template = seg.streams.video[0]
                # opaque: reuse the demuxed stream's codec (libdav1d has no encoder of that name to look up).
                self.video = self.container.add_stream_from_template(template, opaque=True)
                copy_stream_properties(template, self.video)
                if template.codec_context.name == "hevc" and format in ("mp4", "mov"):
                    self.video.codec_context.codec_tag = "hvc1"
            with map_av_errors("input", source.name):
                self._source = av.open(str(source))
            sources = [self._source.streams[index] for index in copy_streams]
            # Set up as HDR10Writer sets up its copies: the same streams skipped with the same warnings.
            self._copied, self.warnings = add_copied_streams(self.container, sources, path)
            self._pending = self._source_packets()
            self._held: Packet | None = None
        except BaseException:
            self.container.close()
            raise

    def _source_packets(self) -> Iterator[Packet]:
        streams = [self._source.streams[i] for i in self._copied]
        if not streams:
            return
        with map_av_errors("input", self.path.name):
            for packet in self._source.demux(streams):
                if packet.size and (packet.dts is not None or packet.pts is not None):
                    yield packet

    def _copy_until(self, end_s: float | None) -> None:
        """Mux copied-stream packets that start before ``end_s`` (all that are left when None)."""
        while True:
            packet = self._held if self._held is not None else next(self._pending, None)
            self._held = None
            if packet is None:
                return
            ts = packet.dts if packet.dts is not None else packet.pts
            if end_s is not None and float((ts or 0) * packet.time_base) >= end_s:
                self._held = packet
                return
            packet.stream = self._copied[packet.stream.index]
            with map_av_errors("output", self.path.name):
                self.container.mux(packet)

    def write(self, segment: bytes, end_s: float) -> int:
        """Append one encoded segment (a container whose video starts on an IDR); returns its frames.

        Raises
        ------
        UnsupportedFormatError
            If the segment's video codec differs from the first segment's.
        OutputError
            If the file cannot be written.
        """
        frames = 0
        with map_av_errors("output", self.path.name), av.open(io.BytesIO(segment), "r") as seg:
            video = seg.streams.video[0]
            if video.codec_context.name != self.video.codec_context.name:
                raise UnsupportedFormatError(
                    f"segment codec {video.codec_context.name} differs from {self.video.codec_context.name}"
                )
            for packet in seg.demux(video):
                if packet.size == 0:
                    continue
                if self._last_dts is not None and packet.dts is not None and packet.dts <= self._last_dts:
                    packet.dts = self._last_dts + 1  # never seen (segments share the reorder delay); cheap
                self._last_dts = packet.dts
                packet.stream = self.video
                self.container.mux(packet)
                frames += 1
        self._copy_until(end_s)
        self.frames += frames
        return frames

    def close(self) -> None:
        """Copy what is left of the other streams and write the trailer.

        Raises
        ------
        OutputError
            If the file cannot be completed.
        """
        try:
            self._copy_until(None)
        finally:
            self._source.close()
            with map_av_errors("output", self.path.name):
                self.container.close()

    def abort(self) -> None:
        """Close without completing (the caller deletes the file)."""
        self._source.close()
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self.container.close()
