"""HDR10 encoder: 10-bit 4:2:0 PQ BT.2020 planes in, HEVC Main10 (libx265) or AV1 (libsvtav1) out.

Stream colour tags are set on the codec context *and* in the encoder's own parameters (x265 writes the VUI
from ``x265-params``, SVT-AV1 the sequence header from ``svtav1-params``), together with the ST 2086
mastering display and a CTA-861.3 content light level. The light level written here is a placeholder: the
real MaxCLL/MaxFALL are measured on the frames given to :meth:`HDR10Writer.write` and patched in afterwards
by :mod:`service.video.light`.

Audio and subtitle packets are copied unchanged into the same file; streams the container cannot hold are
skipped and reported in :attr:`HDR10Writer.warnings`.
"""

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import av
import av.container
import av.stream
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from av.video.stream import VideoStream

from service.colour.kernels import Planes
from service.errors import InputError, UnsupportedFormatError
from service.video.errors import map_av_errors
from service.video.frames import yuv420p10_frame, yuv420p10_planes
from service.video.hdr10_metadata import HDR10Metadata, join_params, svtav1_params, x265_params

Codec = Literal["hevc", "av1"]

ENCODERS: dict[str, str] = {"hevc": "libx265", "av1": "libsvtav1"}


class Container(StrEnum):
    """The output containers we write (the job option), each with its suffix, FFmpeg muxer and media type."""

    MP4 = "mp4"
    MKV = "mkv"
    MOV = "mov"

    @property
    def suffix(self) -> str:
        """File name suffix, e.g. ``.mkv``."""
        return f".{self.value}"

    @property
    def muxer(self) -> str:
        """FFmpeg muxer name, e.g. ``matroska``."""
        return _MUXERS[self]

    @property
    def media_type(self) -> str:
        """Media type of a file in this container, e.g. ``video/x-matroska``."""
        return _MEDIA_TYPES[self]


_MUXERS = {Container.MP4: "mp4", Container.MKV: "matroska", Container.MOV: "mov"}
_MEDIA_TYPES = {
    Container.MP4: "video/mp4",
    Container.MKV: "video/x-matroska",
    Container.MOV: "video/quicktime",
}
_BY_SUFFIX = {container.suffix: container for container in Container}

DEFAULT_CRF: dict[str, int] = {"hevc": 20, "av1": 30}
DEFAULT_PRESET: dict[str, str] = {"hevc": "veryfast", "av1": "10"}
PRESETS: dict[str, tuple[str, ...]] = {
    "hevc": (
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
        "placebo",
    ),
    "av1": tuple(str(p) for p in range(-1, 14)),
}
"""Presets each encoder opens with: x265's names, SVT-AV1's numbers (-1 slowest to 13 fastest)."""
_MP4_FAMILY = ("mp4", "mov")


def container_format(path: Path) -> str:
    """FFmpeg muxer name for an output path, from its suffix.

    Raises
    ------
    InputError
        For a suffix we do not write.
    """
    container = _BY_SUFFIX.get(path.suffix.lower())
    if container is None:
        raise InputError(
            f"output suffix '{path.suffix}' is not supported; expected one of {sorted(_BY_SUFFIX)}"
        )
    return container.muxer


def check_codec_container(codec: str, format: str) -> None:
    """Refuse codec/container pairs the muxers here cannot write, before any work is done.

    Raises
    ------
    UnsupportedFormatError
        For AV1 in QuickTime ``.mov`` (FFmpeg's mov muxer has no AV1 sample entry).
    """
    if codec == "av1" and format == "mov":
        raise UnsupportedFormatError("av1 video cannot be written to .mov files; use .mp4 or .mkv")


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder choice and quality; ``None`` picks the per-codec default (:data:`DEFAULT_CRF`, ...)."""

    codec: Codec = "hevc"
    crf: int | None = None
    preset: str | None = None
    keyint_s: float = 2.0
    """Keyframe interval in seconds: bounds seek cost and lets fragmented outputs cut often."""
    params: Mapping[str, str] = field(default_factory=dict)
    """Extra encoder parameters (``x265-params`` / ``svtav1-params`` keys), applied last."""
    threads: int = 0

    def __post_init__(self) -> None:
        if self.codec not in ENCODERS:
            raise InputError(f"codec '{self.codec}' is not supported; expected one of {sorted(ENCODERS)}")
        limit = 51 if self.codec == "hevc" else 63
        if self.crf is not None and not 0 <= self.crf <= limit:
            raise InputError(f"crf {self.crf} is out of range for {self.codec}; expected 0 to {limit}")
        if self.keyint_s <= 0:
            raise InputError(f"keyint_s {self.keyint_s} must be > 0")


def check_encode_options(options: EncodeOptions, format: str) -> None:
    """Refuse options the encoder or muxer would only refuse once a conversion is under way.

    :class:`EncodeOptions` checks codec and crf when it is built; this adds the preset (an unknown one makes
    ``avcodec_open2`` fail) and the codec/container pair, so a caller (the job API) can refuse them up front.

    Raises
    ------
    InputError
        For a preset the codec does not have.
    UnsupportedFormatError
        For a codec the container cannot hold (:func:`check_codec_container`).
    """
    presets = PRESETS[options.codec]
    if options.preset is not None and options.preset not in presets:
        raise InputError(
            f"preset '{options.preset}' is not a {options.codec} preset; expected one of {', '.join(presets)}"
        )
    check_codec_container(options.codec, format)


X265_LOOKAHEAD: dict[str, str] = {"rc-lookahead": "8", "bframes": "3"}
"""Lookahead of the x265 presets that default to 15 frames and 4 B-frames (``veryfast``, our default, and
``faster``, ``fast``). x265 holds ~14.5 MB per 1080p frame in its lookahead (the 10-bit picture with borders
and its half-resolution planes), so this takes ~145 MB off a 1080p conversion (docs/ARCHITECTURE.md).
On two real clips at 1080p PQ (the shared ferris clip and Big Buck Bunny, ``bt2446a``, CRF 20) it is
rate-distortion neutral: luma PSNR against the encoder's input at equal size within 0.03 dB of the default's
curve (fitted through CRF 19-21), and at the same CRF the files differ by -0.1 % and -3 % with +0.03 and
-0.07 dB, about a tenth of a CRF step; chroma PSNR (49-56 dB) drops 0.4-0.5 dB. Shorter costs more chroma
(6 frames: -0.8 dB) or luma (5 frames: -0.15 dB at equal size), so it stops here.
Slower presets keep x265's deeper lookahead (their users chose quality over memory); ``ultrafast`` and
``superfast`` are lighter already. A ``bframes`` or ``rc-lookahead`` in :attr:`EncodeOptions.params` replaces
both."""
_BOUNDED_PRESETS = ("veryfast", "faster", "fast")


def encoder_params(options: EncodeOptions, metadata: HDR10Metadata, keyint: int) -> dict[str, str]:
    """The codec context options (including the joined ``*-params`` string) for one encode."""
    crf = options.crf if options.crf is not None else DEFAULT_CRF[options.codec]
    preset = options.preset or DEFAULT_PRESET[options.codec]
    if options.codec == "hevc":
        params = x265_params(metadata) | {"keyint": str(keyint), "info": "0", "log-level": "error"}
        if preset in _BOUNDED_PRESETS and not X265_LOOKAHEAD.keys() & options.params.keys():
            params |= X265_LOOKAHEAD
        params |= dict(options.params)
        return {"preset": preset, "crf": str(crf), "x265-params": join_params(params)}
    params = svtav1_params(metadata) | {"keyint": str(keyint)}
    params |= dict(options.params)
    return {"preset": preset, "crf": str(crf), "svtav1-params": join_params(params)}


_UNCOPIED_TAGS = frozenset({"duration", "encoder", "number_of_frames", "number_of_bytes", "bps"})
"""Tags that describe the old encode (MKV statistics tags), which the muxer rewrites or which would lie."""


def copy_stream_properties(src: av.stream.Stream, dst: av.stream.Stream) -> None:
    """Copy language/title tags and disposition (default, forced...), which templates leave behind."""
    dst.metadata.update(
        {k: v for k, v in src.metadata.items() if k.lower().split("-")[0] not in _UNCOPIED_TAGS}
    )
    dst.disposition = src.disposition


def add_copied_streams(
    container: av.container.OutputContainer, sources: Iterable[av.stream.Stream], path: Path
) -> tuple[dict[int, av.stream.Stream], list[str]]:
    """Add a stream-copy twin of each of ``sources`` (audio, subtitles) to ``container``.

    Every writer that copies input streams next to its video (:class:`HDR10Writer`, and the segment
    concatenation of :mod:`service.video.remux`) sets them up here, so they skip the same codecs with the
    same warning and keep the same tags and disposition (which templates leave behind).

    Returns
    -------
    tuple of dict and list
        The output stream of every copied source, by the source's index, and a warning for every source
        whose codec the container cannot hold (skipped).

    Raises
    ------
    OutputError
        From the muxer (``path`` names the output in the message).
    """
    supported = container.supported_codecs
    copied: dict[int, av.stream.Stream] = {}
    warnings: list[str] = []
    for src in sources:
        name = src.codec_context.name
        if name not in supported:
            warnings.append(
                f"{src.type} stream #{src.index} ({name}) cannot be stored in {path.suffix}; skipped"
            )
            continue
        with map_av_errors("output", path.name):
            out = container.add_stream_from_template(src)
        copy_stream_properties(src, out)
        copied[src.index] = out
    return copied, warnings


class HDR10Writer:
    """One output file: an HDR10 video stream plus copies of selected input streams.

    Parameters
    ----------
    path : Path
        Output file; ``format`` names the muxer (see :func:`container_format`).
    width, height : int
        Frame size (even).
    time_base : Fraction
        Time base of the pts passed to :meth:`write`: the source's, so VFR timing survives.
    frame_rate : Fraction
        Nominal rate for rate control and the keyframe interval.
    copy_streams : sequence of Stream
        Input streams whose packets :meth:`copy` will receive.

    Raises
    ------
    UnsupportedFormatError
        If the codec cannot go into the container (AV1 in MOV, for instance).
    OutputError, EngineError
        From the muxer or the encoder.
    """

    def __init__(
        self,
        path: Path,
        *,
        format: str,
        width: int,
        height: int,
        time_base: Fraction,
        frame_rate: Fraction,
        options: EncodeOptions,
        metadata: HDR10Metadata,
        sample_aspect_ratio: Fraction | None = None,
        rotation: int = 0,
        copy_streams: Sequence[av.stream.Stream] = (),
    ) -> None:
        self.path = path
        self.warnings: list[str] = []
        self.frames = 0
        self._last_dts: int | None = None
        self._max_reorder = 32 * max(1, round(1 / (frame_rate * time_base)))  # ticks of 32 frames
        with map_av_errors("output", path.name):
            self.container: av.container.OutputContainer = av.open(str(path), "w", format=format)
        try:
            self._setup(
                format,
                width,
                height,
                time_base,
                frame_rate,
                options,
                metadata,
                sample_aspect_ratio,
                rotation,
                copy_streams,
            )
        except BaseException:
            self.container.close()
            raise

    def _setup(
        self,
        format: str,
        width: int,
        height: int,
        time_base: Fraction,
        frame_rate: Fraction,
        options: EncodeOptions,
        metadata: HDR10Metadata,
        sar: Fraction | None,
        rotation: int,
        copy_streams: Sequence[av.stream.Stream],
    ) -> None:
        supported = self.container.supported_codecs
        check_codec_container(options.codec, format)
        if options.codec not in supported:
            raise UnsupportedFormatError(
                f"{options.codec} video cannot be written to {self.path.suffix} files"
            )
        with map_av_errors("output", self.path.name):
            stream = cast(VideoStream, self.container.add_stream(ENCODERS[options.codec], rate=frame_rate))
        cc = stream.codec_context
        cc.width, cc.height = width, height
        cc.pix_fmt = "yuv420p10le"
        cc.time_base = time_base
        stream.time_base = time_base
        cc.color_primaries = ColorPrimaries.BT2020
        cc.color_trc = ColorTrc.SMPTE2084
        cc.colorspace = Colorspace.BT2020
        cc.color_range = ColorRange.MPEG
        if sar:
            cc.sample_aspect_ratio = sar
        keyint = max(1, round(float(frame_rate) * options.keyint_s))
        cc.gop_size = keyint
        cc.thread_count = options.threads
        cc.options = encoder_params(options, metadata, keyint)
        if options.codec == "hevc" and format in _MP4_FAMILY:
            cc.codec_tag = "hvc1"  # Apple players refuse 'hev1'
        if rotation:
            stream.set_display_rotation(rotation)
        self.video = stream
        self.copied, skipped = add_copied_streams(self.container, copy_streams, self.path)
        self.warnings += skipped

    def blank_frame(self) -> tuple[av.VideoFrame, Planes]:
        """A new frame for :meth:`write_frame` and writable (Y, U, V) views of it, for the kernel to fill.

        Filling the frame in place spares a 1080p conversion a 6 MB plane buffer and its copy per frame.
        """
        frame = av.VideoFrame(self.video.codec_context.width, self.video.codec_context.height, "yuv420p10le")
        return frame, yuv420p10_planes(frame)

    def write(self, planes: Planes, pts: int) -> None:
        """Encode one frame of kernel output at ``pts`` (source time base)."""
        self.write_frame(yuv420p10_frame(planes), pts)

    def write_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode a ``yuv420p10le`` frame (from :meth:`blank_frame`) at ``pts`` (source time base)."""
        frame.pts = pts
        frame.time_base = self.video.codec_context.time_base
        with map_av_errors("output", self.path.name):
            self._mux_video(self.video.encode(frame))
        self.frames += 1

    def copy(self, packet: "av.Packet[Any]") -> None:
        """Mux a packet of a copied input stream unchanged (ignored for skipped streams)."""
        out = self.copied.get(packet.stream.index)
        if out is None or (packet.dts is None and packet.pts is None):
            return
        packet.stream = out
        with map_av_errors("output", self.path.name):
            self.container.mux(packet)

    def _mux_video(self, packets: "Iterable[av.Packet[Any]]") -> None:
        for packet in packets:
            # libx265 emits garbage DTS on 1-2 frame encodes (dts > pts, or ~-1e14); MP4 rejects both.
            # Real reordering delay never exceeds x265's 16 B-frames, so anything further off is garbage.
            if (
                packet.pts is not None
                and packet.dts is not None
                and (packet.dts > packet.pts or packet.dts < packet.pts - self._max_reorder)
            ):
                packet.dts = packet.pts
            if self._last_dts is not None and packet.dts is not None and packet.dts <= self._last_dts:
                packet.dts = self._last_dts + 1
            self._last_dts = packet.dts
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the trailer.

        Raises
        ------
        OutputError
            If the file cannot be completed: closing flushes the muxer's buffer and writes the index, so a
            full disk often surfaces only here.
        """
        with map_av_errors("output", self.path.name):
            try:
                self._mux_video(self.video.encode(None))
            finally:
                self.container.close()

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        with contextlib.suppress(av.error.FFmpegError):
            self.container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
