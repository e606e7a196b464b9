"""Open, probe and decode an SDR video into batches of 8-bit R'G'B' frames with their timestamps.

The probe resolves everything the operators need before the first frame is decoded: size (refusing odd and
absurd sizes early), timing, sample aspect ratio, and the colour description. Untagged inputs get the usual
defaults: BT.709 matrix and primaries for HD, BT.601 (SMPTE 170M, or BT.470 BG at 576 lines) for SD,
limited range, BT.1886 display. Inputs tagged PQ or HLG are refused: they are HDR already.

Truncation policy: a truncated MKV or MPEG-TS decodes short without any FFmpeg error, so after the last
frame :meth:`VideoReader.check_complete` compares what was decoded with what the container declared and
raises :class:`CorruptStreamError` when more than ``max(2 frames, 2 %)`` of the declared video is missing.
Corrupt packets raise immediately, naming the frame they follow, and so do frames the decoder marks as
corrupt (decoded with concealed damage, e.g. the cut-off last frame of a truncated raw stream): a service
should not silently deliver a damaged conversion. :meth:`VideoReader.scan_packets` applies the same
completeness rule to demuxed packets without decoding, so the REST probe can refuse truncated and over-long
uploads before queueing a job.

PyAV's logging is never enabled here: with threaded decoding it can hang the process.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import av
import av.container
import av.rational
import av.stream
import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.tags import HDR_TRANSFERS, Matrix, Primaries, Range, Transfer
from service.errors import AlreadyHDRError, CorruptStreamError, InputError, UnsupportedFormatError
from service.video.errors import ffmpeg_detail, map_av_errors
from service.video.frames import to_rgb24

type Packet = av.Packet[Any]
"""A demuxed packet of any stream (what passthrough callbacks receive)."""
type Stream = av.stream.Stream
"""A stream of an opened container (what the writer copies)."""

SD_MAX_HEIGHT = 719
"""Frames up to this many lines are SD and default to BT.601 when untagged (as FFmpeg and mpv assume)."""

_RGB_FORMATS = ("rgb", "bgr", "gbr", "argb", "abgr", "rgba", "bgra")


MIN_WIDTH = 64
"""libx265 (PyAV 19 wheel) corrupts the heap and aborts the process on frames 34-48 px wide (measured: a
6-frame 48x32 encode crashes 3 of 3 runs, "free(): invalid size"), so anything narrower than one 64 px
CTU is refused up front rather than risked."""
MIN_HEIGHT = 16
"""The smallest height measured safe with both encoders (64x16, 200x16)."""


@dataclass(frozen=True)
class DecodeOptions:
    """Limits and colour overrides for decoding; every ``None`` means "from the tags, else the default"."""

    max_width: int = 8192
    max_height: int = 4320
    transfer: Transfer | None = None
    primaries: Primaries | None = None
    matrix: Matrix | None = None
    range: Range | None = None
    threads: int = 0
    """Decoder threads; 0 lets FFmpeg pick (one per core)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the probe learnt about the input's video stream."""

    width: int
    height: int
    codec: str
    pix_fmt: str
    time_base: Fraction
    frame_rate: Fraction
    """Average (or guessed) rate: for the encoder's rate control and keyint; timestamps stay the source's."""
    frames: int
    """Declared frame count, or an estimate from duration x rate; 0 when unknown."""
    duration_s: float | None
    sample_aspect_ratio: Fraction | None
    colour: ColourDescription
    matrix: Matrix
    range: Range
    warnings: tuple[str, ...] = ()
    """Tags that could not be honoured (reported in the conversion result)."""


@dataclass(frozen=True)
class Batch:
    """Consecutive decoded frames: N x H x W x 3 uint8 R'G'B' and their pts in ``time_base`` units."""

    rgb: npt.NDArray[np.uint8]
    pts: tuple[int, ...]
    time_base: Fraction
    rotation: int
    """Display rotation of the frames, degrees counter-clockwise (from the display matrix)."""


@dataclass(frozen=True)
class PacketScan:
    """What demuxing the video stream without decoding found (see :meth:`VideoReader.scan_packets`)."""

    packets: int
    """Non-empty video packets read (one per frame for every codec we accept)."""
    span_s: float
    """Time the packets cover: first timestamp to the end of the last packet, or the sum of packet
    durations when the stream has no timestamps (raw elementary streams)."""
    end_s: float | None
    """End of the last packet in seconds on the stream's clock (None without timestamps)."""
    corrupt: int
    """Packets the demuxer flagged as damaged (e.g. cut short by truncation)."""
    stopped_early: bool
    """The scan stopped once ``span_s`` passed the caller's limit; the stream is at least that long."""


def _fraction(value: "av.rational.AVRational | Fraction") -> Fraction:
    """PyAV rationals as plain fractions (hashable, exact, and what our dataclasses promise)."""
    return Fraction(value.numerator, value.denominator)


def _enum[E: (Transfer, Primaries, Matrix, Range)](
    cls: type[E], value: int, default: E, warnings: list[str] | None = None
) -> E:
    """Tag value -> enum member; unspecified or unknown values give ``default`` (unknown ones say so)."""
    try:
        member = cls(value)
    except ValueError:
        if warnings is not None and value not in (0, 2):  # 0 reserved, 2 unspecified: nothing to report
            warnings.append(
                f"input {cls.__name__.lower()} tag {value} is not supported; using {default.name}"
            )
        return default
    return default if member.name == "UNSPECIFIED" else member


def resolve_colour(
    stream_trc: int,
    stream_pri: int,
    stream_spc: int,
    stream_range: int,
    height: int,
    pix_fmt: str,
    options: DecodeOptions,
    warnings: list[str] | None = None,
) -> tuple[ColourDescription, Matrix, Range]:
    """Colour description, Y'CbCr matrix and range from stream tags, overrides and size-based defaults.

    Unknown transfer or primaries tags fall back to the defaults and add a line to ``warnings``.

    Raises
    ------
    AlreadyHDRError
        If the transfer is PQ or HLG (tagged or overridden).
    UnsupportedFormatError
        For a matrix we cannot decode (e.g. BT.2020 constant luminance, ICtCp).
    """
    sd = height <= SD_MAX_HEIGHT
    sd_primaries = Primaries.BT470BG if height in (288, 576) else Primaries.SMPTE170M
    transfer = options.transfer or _enum(Transfer, stream_trc, Transfer.UNSPECIFIED, warnings)
    if transfer in HDR_TRANSFERS:
        raise AlreadyHDRError(f"input is tagged {transfer.name} (HDR already); itmstream converts SDR only")
    if transfer in (Transfer.UNSPECIFIED, Transfer.LINEAR):
        transfer = Transfer.BT709
    primaries = options.primaries or _enum(
        Primaries, stream_pri, sd_primaries if sd else Primaries.BT709, warnings
    )
    if stream_spc == Matrix.RGB and not pix_fmt.startswith(_RGB_FORMATS):
        stream_spc = Matrix.UNSPECIFIED  # a "GBR" tag on Y'CbCr pixels is a muxing mistake
    if pix_fmt.startswith(_RGB_FORMATS):
        matrix = Matrix.RGB
    elif options.matrix is not None:
        matrix = options.matrix
    else:
        if stream_spc not in (m.value for m in Matrix) and stream_spc != 2:
            raise UnsupportedFormatError(
                f"input Y'CbCr matrix (AVCOL_SPC {stream_spc}) is not supported; "
                f"expected one of {[m.name for m in Matrix if m is not Matrix.UNSPECIFIED]}"
            )
        matrix = _enum(Matrix, stream_spc, Matrix.SMPTE170M if sd else Matrix.BT709)
    full = pix_fmt.startswith("yuvj") or matrix is Matrix.RGB
    rng = options.range or _enum(Range, stream_range, Range.JPEG if full else Range.MPEG)
    return ColourDescription(transfer, primaries), matrix, rng


class VideoReader:
    """An opened input: probe on construction, then :meth:`batches` once.

    Use as a context manager so the container is closed on every path. ``container`` is exposed for the
    encoder, which copies the audio and subtitle streams' packets (see ``passthrough``).

    Raises
    ------
    InputError
        Missing file, no video stream, odd or absurd frame size (and the subclasses below).
    CorruptStreamError
        Not media, truncated, or corrupt.
    AlreadyHDRError
        Input tagged PQ/HLG.
    """

    def __init__(
        self, path: Path | str, options: DecodeOptions | None = None, *, name: str | None = None
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        """How messages call the input: the file's name, or the client's name for it (uploads are stored
        under generated names that mean nothing to the person reading the error)."""
        self.options = options or DecodeOptions()
        self.frames_decoded = 0
        self.end_s: float | None = None
        self.decode_warnings: list[str] = []
        """Things noticed while decoding (interlacing...), for the conversion result."""
        self._frame_duration = 0
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise CorruptStreamError(f"input '{self.name}' is empty (0 bytes)")
        with map_av_errors("input", self.name):
            self.container: av.container.InputContainer = av.open(str(self.path), "r")
        try:
            self.info = self._probe()
        except BaseException:
            self.container.close()
            raise

    def _probe(self) -> VideoInfo:
        if not self.container.streams.video:
            kinds: list[str] = sorted({s.type for s in self.container.streams})
            found = f"{' and '.join(kinds)} streams only" if kinds else "the container holds no streams"
            hint = "; audio-only file?" if kinds == ["audio"] else ""
            raise UnsupportedFormatError(f"input '{self.name}' has no video stream ({found}{hint})")
        stream = self.container.streams.video[0]
        cc = stream.codec_context
        name = self.name
        if cc is None:  # FFmpeg knows no decoder for the stream's codec id
            raise UnsupportedFormatError(f"input '{name}' uses a video codec this build cannot decode")
        width, height = cc.width, cc.height
        if width <= 0 or height <= 0:
            raise CorruptStreamError(
                f"input '{name}' declares no usable frame size ({width}x{height}): the file is corrupt, or "
                "declares a frame too large to allocate (FFmpeg refuses about 16384x16384 and more)"
            )
        limit = self.options
        if width > limit.max_width or height > limit.max_height:
            raise UnsupportedFormatError(
                f"input '{name}' is {width}x{height}; the limit is {limit.max_width}x{limit.max_height}"
            )
        if width % 2 or height % 2:
            raise UnsupportedFormatError(
                f"input '{name}' is {width}x{height}; HDR10 (4:2:0) needs even width and height"
            )
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            raise UnsupportedFormatError(
                f"input '{name}' is {width}x{height}; frames must be at least {MIN_WIDTH}x{MIN_HEIGHT} pixels"
            )
        pix_fmt = cc.format.name if cc.format is not None else ""
        warnings: list[str] = []
        colour, matrix, rng = resolve_colour(
            cc.color_trc,
            cc.color_primaries,
            cc.colorspace,
            cc.color_range,
            height,
            pix_fmt,
            self.options,
            warnings,
        )
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        time_base = stream.time_base or Fraction(1, 90000)
        duration_s: float | None = None
        if stream.duration:
            duration_s = float(stream.duration * time_base)
        elif self.container.duration:
            duration_s = self.container.duration / av.time_base
        frames = stream.frames or (round(duration_s * rate) if duration_s else 0)
        sar = stream.sample_aspect_ratio
        cc.thread_type = "AUTO"
        cc.thread_count = limit.threads
        return VideoInfo(
            width=width,
            height=height,
            codec=cc.name,
            pix_fmt=pix_fmt,
            time_base=_fraction(time_base),
            frame_rate=_fraction(rate),
            frames=int(frames),
            duration_s=duration_s,
            sample_aspect_ratio=_fraction(sar) if sar else None,
            colour=colour,
            matrix=matrix,
            range=rng,
            warnings=tuple(warnings),
        )

    @property
    def still_image_format(self) -> str | None:
        """The demuxer's name when the input is a picture file (PNG, JPEG...) rather than a video, else None.

        FFmpeg opens a single picture as a one-frame video through its image demuxers (``image2``,
        ``png_pipe``, ``jpeg_pipe``...); animated formats with their own demuxer (GIF) are videos.
        """
        name = str(self.container.format.name)
        return name if name == "image2" or name.endswith("_pipe") else None

    @property
    def video_stream(self) -> av.video.stream.VideoStream:
        """The stream being converted (the first video stream)."""
        return self.container.streams.video[0]

    def other_streams(self) -> list[av.stream.Stream]:
        """Audio and subtitle streams, in file order: the candidates for copying into the output."""
        return [s for s in self.container.streams if s.type in ("audio", "subtitle")]

    def batches(
        self,
        size: int,
        *,
        passthrough: Sequence[av.stream.Stream] = (),
        on_packet: Callable[[Packet], None] | None = None,
        max_frames: int | None = None,
    ) -> Iterator[Batch]:
        """Decode the video stream into batches of at most ``size`` frames.

        Parameters
        ----------
        size : int
            Frames per batch (the last one may be shorter).
        passthrough : sequence of Stream
            Other streams to demux alongside; their packets go to ``on_packet`` unchanged, so the output
            interleaves them without a second read of the input.
        on_packet : callable, optional
            Receives each passthrough packet.
        max_frames : int, optional
            Stop after this many frames (previews, tests); disables the completeness check.

        Raises
        ------
        CorruptStreamError
            When a packet cannot be decoded.
        UnsupportedFormatError
            When the frame size changes mid-stream.
        """
        if size < 1:
            raise InputError(f"batch size {size} is invalid; expected >= 1")
        info = self.info
        stream = self.video_stream
        # Frames are decoded straight into the batch (one array per batch, never one per frame and a copy).
        rgb = np.empty((size, info.height, info.width, 3), np.uint8)
        pts: list[int] = []
        rotation = 0
        self._max_frames = max_frames
        with self._locate_damage(), map_av_errors("input", self.name):
            for packet in self.container.demux([stream, *passthrough]):
                if packet.stream is not stream:
                    if on_packet is not None and packet.size > 0:
                        on_packet(packet)
                    continue
                for frame in stream.decode(packet):
                    if frame.is_corrupt:  # decoded, but with concealed damage (a cut-off last frame...)
                        raise CorruptStreamError(
                            f"input '{self.name}' is corrupt: frame {self.frames_decoded + 1} decodes only "
                            "in part (the decoder concealed damage; truncated?), so the conversion stops "
                            "rather than deliver damaged video"
                        )
                    if frame.width != info.width or frame.height != info.height:
                        raise UnsupportedFormatError(
                            f"frame size changes mid-stream ({info.width}x{info.height} -> "
                            f"{frame.width}x{frame.height}); not supported"
                        )
                    rotation = int(frame.rotation or 0)
                    if self.frames_decoded == 0 and frame.interlaced_frame:
                        self.decode_warnings.append(
                            "input is interlaced; frames are converted as progressive (no deinterlacing)"
                        )
                    frame_pts = self._pts(frame)
                    to_rgb24(frame, info.matrix, info.range, out=rgb[len(pts)])
                    del frame  # FFmpeg's buffers go back to its pool before the batch is converted
                    pts.append(frame_pts)
                    self.frames_decoded += 1
                    if len(pts) == size:
                        yield Batch(rgb, tuple(pts), info.time_base, rotation)
                        rgb = np.empty_like(rgb)  # the caller may still hold the last batch
                        pts = []
                    if max_frames is not None and self.frames_decoded >= max_frames:
                        break
                if max_frames is not None and self.frames_decoded >= max_frames:
                    break
        if pts:
            yield Batch(rgb[: len(pts)], tuple(pts), info.time_base, rotation)

    @contextmanager
    def _locate_damage(self) -> Iterator[None]:
        """Say how far decoding got when a packet turns out corrupt, so the damage can be found.

        Raises
        ------
        CorruptStreamError
            The error from inside the block, with the count of good frames before it.
        """
        try:
            yield
        except CorruptStreamError as exc:
            if self.frames_decoded == 0 or exc.__cause__ is None:
                raise
            where = f"the video packet after frame {self.frames_decoded}"
            raise CorruptStreamError(
                f"input '{self.name}' is corrupt: {where} does not decode ({ffmpeg_detail(exc.__cause__)}); "
                "the conversion stops rather than deliver damaged video"
            ) from exc.__cause__

    def _pts(self, frame: av.VideoFrame) -> int:
        """Frame pts, synthesised from the rate when the container has none (raw streams)."""
        tb = self.info.time_base
        step = max(round(1 / (self.info.frame_rate * tb)), 1)
        value = self.frames_decoded * step if frame.pts is None else int(frame.pts)
        duration = int(frame.duration) if frame.duration else step
        self._frame_duration = duration
        self.end_s = float((value + duration) * tb)
        return value

    def check_complete(self) -> None:
        """Raise if decoding stopped well short of what the container declared (see module docstring).

        Raises
        ------
        CorruptStreamError
            If frames are missing, or no frame decoded at all.
        """
        if self.frames_decoded == 0:
            raise CorruptStreamError(
                f"input '{self.name}' contains no decodable video frame (truncated or corrupt?)"
            )
        if getattr(self, "_max_frames", None) is not None:
            return
        self._check_against_declared(self.frames_decoded, self.end_s, "decoded")

    def scan_packets(
        self, stop_after_s: float | None = None, stop_after_packets: int | None = None
    ) -> PacketScan:
        """Demux the video stream to its end without decoding: packets, time covered, damage flags.

        Much cheaper than decoding, so the REST probe can measure streams that declare no duration (raw
        H.264/HEVC) and find truncation before a job is queued. It consumes the container: call it on a
        reader used only for probing, never before :meth:`batches`.

        Parameters
        ----------
        stop_after_s : float, optional
            Stop as soon as the packets cover more than this many seconds (``stopped_early`` is then set),
            so an endless or huge stream costs no more than the limit.
        stop_after_packets : int, optional
            Likewise, stop once more than this many packets were read (absurd frame rates).

        Raises
        ------
        CorruptStreamError
            If the demuxer fails on the data.
        """
        stream = self.video_stream
        tb = self.info.time_base
        default_s = float(1 / self.info.frame_rate)
        packets = corrupt = 0
        summed_s = 0.0
        first_s: float | None = None
        end_s: float | None = None
        with map_av_errors("input", self.name):
            for packet in self.container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream flush packet
                    continue
                packets += 1
                corrupt += bool(packet.is_corrupt)
                length_s = float(packet.duration * packet.time_base) if packet.duration else default_s
                summed_s += length_s
                if packet.pts is not None:
                    start_s = float(packet.pts * tb)
                    first_s = start_s if first_s is None else min(first_s, start_s)
                    end_s = start_s + length_s if end_s is None else max(end_s, start_s + length_s)
                span_s = end_s - first_s if end_s is not None and first_s is not None else summed_s
                too_long = stop_after_s is not None and span_s > stop_after_s
                if too_long or (stop_after_packets is not None and packets > stop_after_packets):
                    return PacketScan(packets, span_s, end_s, corrupt, stopped_early=True)
        span_s = end_s - first_s if end_s is not None and first_s is not None else summed_s
        return PacketScan(packets, span_s, end_s if end_s is not None else summed_s, corrupt, False)

    def check_scan(self, scan: PacketScan) -> None:
        """Raise if a complete :meth:`scan_packets` found fewer packets than the container declared.

        Raises
        ------
        CorruptStreamError
            If the stream has no packets, is truncated, or the demuxer flagged damaged packets.
        """
        name = self.name
        if scan.packets == 0:
            raise CorruptStreamError(f"input '{name}' has a video track with no frames in it")
        if scan.stopped_early:
            return
        self._check_against_declared(scan.packets, scan.end_s, "found")
        if scan.corrupt:
            raise CorruptStreamError(
                f"input '{name}' is truncated or corrupt: the demuxer flagged {scan.corrupt} damaged "
                f"video packet(s) of {scan.packets}"
            )

    def _check_against_declared(self, count: int, end_s: float | None, verb: str) -> None:
        """The truncation rule of the module docstring, for ``count`` frames ending at ``end_s``.

        Raises
        ------
        CorruptStreamError
            If more than ``max(2 frames, 2 %)`` of the declared frames or duration is missing.
        """
        name = self.name
        info = self.info
        declared_frames = self.video_stream.frames
        if declared_frames:
            missing = declared_frames - count
            if missing > max(2, 0.02 * declared_frames):
                raise CorruptStreamError(
                    f"input '{name}' is truncated or corrupt: {verb} {count} of "
                    f"{declared_frames} declared frames"
                )
            return
        declared_s, exact = self._declared_video_s()
        if declared_s and end_s is not None:
            start = self.video_stream.start_time
            start_s = float(start * info.time_base) if start else 0.0
            got_s = end_s - start_s
            # The container duration also covers audio, which may outlast the video a little.
            slack = max(2.0 / float(info.frame_rate), 0.02 * declared_s, 0.0 if exact else 0.5)
            if declared_s - got_s > slack:
                raise CorruptStreamError(
                    f"input '{name}' is truncated or corrupt: {verb} {got_s:.2f} s of the "
                    f"{declared_s:.2f} s it declares"
                )

    def _declared_video_s(self) -> tuple[float | None, bool]:
        """Declared video duration and whether it is the video stream's own (True) or the container's."""
        stream = self.video_stream
        if stream.duration:
            return float(stream.duration * self.info.time_base), True
        tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
        if tag:  # Matroska: "HH:MM:SS.nnnnnnnnn"
            try:
                h, m, s = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(s), True
            except ValueError:
                pass
        if self.container.duration:
            return self.container.duration / av.time_base, len(self.container.streams) == 1
        return None, False

    def close(self) -> None:
        """Close the container (idempotent)."""
        self.container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
