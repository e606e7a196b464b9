"""SDR file in, HDR10 file out: decode -> operator -> PQ/Y'CbCr kernel (+ light meter) -> encode -> finalize.

The output appears atomically. The encoder writes into a hidden temporary file next to the destination with
a placeholder content light level, while the kernel that quantises each frame for it also measures the
frame's light (10-bit PQ, full resolution, before chroma subsampling) and
:class:`~service.video.light.LightMeter` keeps MaxCLL/MaxFALL over the frames; finalizing remuxes that
file with the measured values patched into the bitstream (and copied into the container: ``mdcv``/``clli``
boxes in MP4/MOV, MasteringMetadata/MaxCLL/MaxFALL in Matroska), and ``os.replace``-s the result onto the
destination. Temporaries are removed on success, failure and
cancellation, so a reader of the destination directory never sees a partial or unmeasured file.

:func:`convert_video` is what the CLI and the REST workers call. It keeps no global state, checks ``cancel``
between batches, and reports :class:`Progress` after every batch, so it can run in any worker thread.
Segment-parallel conversion (:mod:`service.scaleout`) writes its output with the same public steps, so both
name their temporaries (:func:`temp_path`), choose the streams they copy (:func:`passthrough`) and finish
the file (:class:`Encoded`, :func:`finalize`) identically.
"""

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from service.colour.description import ColourDescription
from service.colour.kernels import nits_to_yuv420p10_light
from service.errors import (
    EngineError,
    InputError,
    InsufficientStorageError,
    ItmError,
    JobCancelledError,
    OutputError,
    is_disk_full,
)
from service.images.exr import write_exr
from service.images.png import write_pq_png
from service.images.read import MAX_PIXELS, read_sdr_image
from service.operators.base import Nits, Operator
from service.video.decode import Batch, DecodeOptions, Packet, Stream, VideoInfo, VideoReader
from service.video.encode import (
    EncodeOptions,
    HDR10Writer,
    check_codec_container,
    container_format,
    copy_stream_properties,
)
from service.video.hdr10_metadata import ContentLightLevel, HDR10Metadata, MasteringDisplay
from service.video.light import LightMeter, make_metadata_template, rewrite_content_light
from service.video.mp4_boxes import add_hdr10_boxes

STAGES = ("decode", "operator", "colour", "encode", "finalize")
ImageFormat = Literal["png", "exr"]
IMAGE_FORMATS: dict[str, ImageFormat] = {".exr": "exr", ".png": "png"}
"""Still formats by output suffix: 16-bit PQ PNG (cICP, mDCV, cLLI) or OpenEXR (linear BT.2020 cd/m²)."""


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert; the defaults give HEVC Main10 at the operator's peak, audio and subtitles copied."""

    encode: EncodeOptions = field(default_factory=EncodeOptions)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    mastering: MasteringDisplay | None = None
    """ST 2086 display; ``None`` means Display P3, D65, 0.0001 cd/m² up to the operator's peak."""
    batch_size: int = 1
    """Frames per operator call. Each 1080p frame in flight holds ~55 MB (8-bit input, float32 light, the
    operator's temporaries) and the operators here gain nothing from batching on a CPU, so one frame keeps a
    conversion's memory lowest; callers whose operator runs elsewhere (the job manager's shared pool) pass
    more, so every worker has a frame."""
    max_frames: int | None = None
    """Convert only the first frames (previews, tests); the completeness check is then skipped."""
    copy_audio: bool = True
    copy_subtitles: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"batch_size {self.batch_size} is invalid; expected >= 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames {self.max_frames} is invalid; expected >= 1 or None")


@dataclass(frozen=True)
class Progress:
    """Reported after every batch (stage ``"convert"``) and once before the remux (``"finalize"``)."""

    frames_done: int
    frames_total: int
    """Estimate from the container (0 when unknown)."""
    fps: float
    eta_s: float | None
    stage: str = "convert"
    batch_seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of this batch per stage (``decode``, ``operator``, ``colour``, ``encode``), for metrics."""


@dataclass(frozen=True)
class ConversionResult:
    """What was written, with the measured HDR10 metadata and where the time went (seconds per stage)."""

    path: Path
    frames: int
    duration_s: float
    width: int
    height: int
    codec: str
    container: str
    max_cll: int | None
    max_fall: int | None
    mastering: MasteringDisplay
    operator: str
    operator_params: dict[str, float | str]
    warnings: tuple[str, ...]
    timings: dict[str, float]


TEMP_ROLES = ("encode", "final", "template", "image")
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.(?:" + "|".join(TEMP_ROLES) + r")\.[A-Za-z0-9]+")


def temp_path(dst: Path, role: str) -> Path:
    """Hidden sibling of ``dst`` for one of :data:`TEMP_ROLES`: how every writer of ``dst`` stays atomic.

    Same filesystem, so ``os.replace`` onto ``dst`` is atomic; same suffix, so the muxer picks the same
    container; a name :func:`is_temp_file` recognises, so what a killed process left is found and removed.
    Public for writers outside this module (scale-out assembles segments into one before :func:`finalize`).
    """
    return dst.with_name(f".{dst.stem}.{secrets.token_hex(4)}.{role}{dst.suffix}")


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is named like a temporary of :func:`convert_video` / :func:`convert_image`.

    A process killed mid-conversion (SIGKILL, OOM, power loss) never runs its cleanup, so the job manager
    uses this at start-up to find what such a process left behind.
    """
    return _TEMP_NAME.fullmatch(path.name) is not None


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def convert_video(
    src: Path,
    dst: Path,
    operator: Operator,
    options: ConvertOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ConversionResult:
    """Convert an SDR video file to HDR10 with MaxCLL/MaxFALL measured on the encoded frames.

    Parameters
    ----------
    src, dst : Path
        Input (anything FFmpeg reads) and output (``.mp4``, ``.mov`` or ``.mkv``; replaced atomically).
    operator : Operator
        The ITM operator; called from this thread only.
    options : ConvertOptions, optional
        Codec, quality, limits.
    progress : callable, optional
        Called with a :class:`Progress` after each batch, from this thread.
    cancel : threading.Event, optional
        Set it from another thread to stop at the next batch boundary.

    Returns
    -------
    ConversionResult

    Raises
    ------
    InputError
        Unusable input or options (subclasses: UnsupportedFormatError, CorruptStreamError, AlreadyHDRError).
    OutputError
        The destination cannot be written (:class:`InsufficientStorageError` when the disk is full; the
        partial output is removed).
    JobCancelledError
        ``cancel`` was set; no output is left behind.
    EngineError
        The operator or encoder failed.
    """
    options = options or ConvertOptions()
    src, dst = Path(src), Path(dst)
    fmt = container_format(dst)
    check_codec_container(options.encode.codec, fmt)
    if not dst.parent.is_dir():
        raise OutputError(f"output directory '{dst.parent}' does not exist")
    mastering = options.mastering or MasteringDisplay(max_nits=operator.peak_nits)
    timings = dict.fromkeys(STAGES, 0.0)
    pass1 = temp_path(dst, "encode")
    try:
        encoded = _encode(src, pass1, fmt, operator, options, mastering, timings, progress, cancel)
        if progress is not None:
            fps = encoded.frames / max(time.perf_counter() - encoded.started, 1e-9)
            progress(Progress(encoded.frames, encoded.frames, fps, 0.0, "finalize"))
        t = time.perf_counter()
        light, notes = finalize(encoded, dst, fmt, mastering, cancel)
        timings["finalize"] = time.perf_counter() - t
    except OSError as exc:
        if is_disk_full(exc):
            raise InsufficientStorageError(
                f"no space left on device while writing '{dst.name}'; the partial output was removed"
            ) from exc
        raise
    finally:
        _unlink(pass1)
    return ConversionResult(
        path=dst,
        frames=encoded.frames,
        duration_s=encoded.duration_s,
        width=encoded.info.width,
        height=encoded.info.height,
        codec=options.encode.codec,
        container=fmt,
        max_cll=light.max_cll,
        max_fall=light.max_fall,
        mastering=mastering,
        operator=operator.name,
        operator_params=operator.params,
        warnings=(*encoded.warnings, *notes),
        timings=timings,
    )


@dataclass(frozen=True)
class Encoded:
    """An encoded file waiting for :func:`finalize`: HDR10 video with a placeholder content light level.

    Encoding and finalizing are separate steps with this between them because the encoder need not run in
    this process: scale-out concatenates segments encoded elsewhere into one such file, with a meter holding
    the maxima of the segments' light, and finalizes it exactly as :func:`convert_video` finalizes its own.
    """

    path: Path
    """The file: a temporary of the destination (:func:`temp_path`, role ``encode``), owned by the caller."""
    frames: int
    """Video frames it must hold; :func:`finalize` fails on any other count."""
    meter: LightMeter
    """The light of those frames, measured on what was handed to the encoder."""


@dataclass(frozen=True)
class _EncodePass(Encoded):
    """What the in-process encode pass leaves: the encoded file, and what the result reports about it."""

    info: VideoInfo
    duration_s: float
    started: float
    """``time.perf_counter()`` when the first batch was requested (for the frame rate)."""
    warnings: tuple[str, ...]
    """Input, decode, dropped-stream and encoder warnings, in that order."""


class _LazyWriter:
    """The pass-1 writer, opened with the first batch (rotation comes from the first frame).

    Packets of copied streams that the demuxer delivers before the writer exists are held, then copied.
    """

    def __init__(
        self,
        path: Path,
        fmt: str,
        reader: VideoReader,
        options: ConvertOptions,
        metadata: HDR10Metadata,
        streams: list[Stream],
    ) -> None:
        self._args = (path, fmt, reader, options, metadata, streams)
        self._pending: list[Packet] = []
        self.writer: HDR10Writer | None = None

    def on_packet(self, packet: Packet) -> None:
        """Copy a packet of a passed-through stream (held until the writer exists)."""
        if self.writer is None:
            self._pending.append(packet)
        else:
            self.writer.copy(packet)

    def open(self, batch: Batch) -> HDR10Writer:
        """The writer, opened now if this is the first batch."""
        if self.writer is None:
            path, fmt, reader, options, metadata, streams = self._args
            self.writer = _open_writer(path, fmt, reader, batch, options, metadata, streams)
            copy_stream_properties(reader.video_stream, self.writer.video)
            for packet in self._pending:
                self.writer.copy(packet)
            self._pending.clear()
        return self.writer


def _encode(
    src: Path,
    pass1: Path,
    fmt: str,
    operator: Operator,
    options: ConvertOptions,
    mastering: MasteringDisplay,
    timings: dict[str, float],
    progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
) -> _EncodePass:
    """Decode, convert, measure and encode every frame into ``pass1`` (placeholder content light level)."""
    placeholder = HDR10Metadata(mastering, ContentLightLevel(round(mastering.max_nits), 1))
    with VideoReader(src, options.decode) as reader:
        info = reader.info
        streams, dropped = passthrough(reader, options)
        lazy = _LazyWriter(pass1, fmt, reader, options, placeholder, streams)
        started = time.perf_counter()
        total = options.max_frames or info.frames
        if options.max_frames and info.frames:
            total = min(options.max_frames, info.frames)
        first_pts: int | None = None
        meter = LightMeter()
        batches = reader.batches(
            options.batch_size, passthrough=streams, on_packet=lazy.on_packet, max_frames=options.max_frames
        )
        try:
            t = time.perf_counter()
            for batch in batches:
                before = dict(timings)
                timings["decode"] += time.perf_counter() - t
                if cancel is not None and cancel.is_set():
                    raise JobCancelledError("conversion cancelled")
                writer = lazy.open(batch)
                nits = _run_operator(operator, batch, info.colour, timings)
                _write_batch(writer, meter, nits, batch.pts, timings)
                first_pts = batch.pts[0] if first_pts is None else first_pts
                if progress is not None:
                    progress(_progress(reader.frames_decoded, total, started, timings, before))
                del batch, nits  # freed before the next frame is decoded and converted, not after (31 MB)
                t = time.perf_counter()
            reader.check_complete()
            if lazy.writer is None:  # pragma: no cover - check_complete raises first
                raise EngineError("no frame was decoded")
            writer = lazy.writer
            writer.close()
            timings["encode"] += time.perf_counter() - t
        except BaseException:
            if lazy.writer is not None:
                lazy.writer.abort()
            raise
        end_s = reader.end_s or 0.0
        return _EncodePass(
            path=pass1,
            info=info,
            frames=reader.frames_decoded,
            duration_s=end_s - float((first_pts or 0) * info.time_base),
            started=started,
            meter=meter,
            warnings=(*info.warnings, *reader.decode_warnings, *dropped, *writer.warnings),
        )


def passthrough(reader: VideoReader, options: ConvertOptions) -> tuple[list[Stream], list[str]]:
    """The audio and subtitle streams to copy, and a warning for every other stream (it is dropped).

    One policy for every path that writes a converted file: scale-out picks the streams it copies into the
    assembled output here too, so both report the same streams copied and dropped with the same warnings.
    """
    streams = [
        s
        for s in reader.other_streams()
        if (s.type == "audio" and options.copy_audio) or (s.type == "subtitle" and options.copy_subtitles)
    ]
    dropped = [
        f"{s.type} stream #{s.index} ({_codec_name(s)}) is not converted or copied; dropped"
        for s in reader.container.streams
        if s is not reader.video_stream and s.type not in ("audio", "subtitle")
    ]
    return streams, dropped


def _write_batch(
    writer: HDR10Writer, meter: LightMeter, nits: Nits, pts: Sequence[int], timings: dict[str, float]
) -> None:
    """PQ Y'CbCr 4:2:0 10-bit of each frame into an encoder frame, and its light to the meter."""
    for i, frame_pts in enumerate(pts):
        t = time.perf_counter()
        frame, planes = writer.blank_frame()
        _, light = nits_to_yuv420p10_light(nits[i], out=planes)
        meter.add(light)
        t2 = time.perf_counter()
        writer.write_frame(frame, frame_pts)
        timings["colour"] += t2 - t
        timings["encode"] += time.perf_counter() - t2


def _progress(
    done: int, total: int, started: float, timings: dict[str, float], before: dict[str, float]
) -> Progress:
    """Progress after a batch: frames, rate, ETA, and this batch's time per stage."""
    fps = done / max(time.perf_counter() - started, 1e-9)
    eta = (total - done) / fps if total >= done and fps > 0 else None
    spent = {stage: timings[stage] - before[stage] for stage in STAGES}
    return Progress(done, max(total, done), fps, eta, batch_seconds=spent)


def finalize(
    encoded: Encoded,
    dst: Path,
    fmt: str,
    mastering: MasteringDisplay,
    cancel: threading.Event | None = None,
) -> tuple[ContentLightLevel, list[str]]:
    """Patch the measured content light level into a remux of ``encoded.path``, then move it onto ``dst``.

    The one step that makes an encoded file a finished HDR10 one, for every path that writes one (here and
    scale-out): MaxCLL/MaxFALL from ``encoded.meter`` go into every packet's SEI/OBU and into the container
    (``mdcv``/``clli`` boxes in MP4/MOV, the track's metadata in Matroska), the packet count is checked, and
    the result replaces ``dst`` atomically. Its own temporaries are removed on every path; ``encoded.path``
    stays the caller's to remove.

    Returns
    -------
    tuple of ContentLightLevel and list of str
        The light level written, and notes for the result's warnings.

    Raises
    ------
    EngineError
        The file holds another number of frames than ``encoded.frames``.
    OutputError
        The result cannot be written or moved onto ``dst``.
    JobCancelledError
        ``cancel`` was set before the move; ``dst`` is untouched.
    OSError
        From the remux (a full disk among them: callers map it, as they do for their own writes).
    """
    pass2 = temp_path(dst, "final")
    template_path = temp_path(dst, "template").with_suffix(".mp4")
    try:
        meter = encoded.meter
        light = meter.content_light(mastering.max_nits)
        notes = [note] if (note := meter.over_peak(mastering.max_nits)) else []
        template = None
        if fmt == "matroska":  # container-level copy of the metadata, via a stream template
            if make_metadata_template(encoded.path, template_path, mastering, light):
                template = template_path
            else:
                notes.append("MasteringMetadata/MaxCLL not added to the track; metadata is in-band only")
        written = rewrite_content_light(encoded.path, pass2, format=fmt, light=light, video_template=template)
        if written != encoded.frames:
            raise EngineError(f"encoder wrote {written} frames for {encoded.frames} input frames")
        if fmt in ("mp4", "mov"):
            try:
                boxed = add_hdr10_boxes(pass2, mastering, light)
            except OSError as exc:
                raise OutputError(f"cannot write '{pass2.name}': {exc.strerror or exc}") from exc
            if not boxed:
                notes.append("mdcv/clli boxes not added (unexpected MP4 layout); metadata is in-band only")
        if cancel is not None and cancel.is_set():
            raise JobCancelledError("conversion cancelled")
        try:
            os.replace(pass2, dst)
        except OSError as exc:
            raise OutputError(f"cannot move the result onto '{dst}': {exc.strerror}") from exc
        return light, notes
    finally:
        _unlink(pass2)
        _unlink(template_path)


def _codec_name(stream: Stream) -> str:
    return stream.codec_context.name if stream.codec_context is not None else "unknown codec"


def _open_writer(
    path: Path,
    fmt: str,
    reader: VideoReader,
    batch: Batch,
    options: ConvertOptions,
    metadata: HDR10Metadata,
    streams: list[Stream],
) -> HDR10Writer:
    """Open the pass-1 writer once the first batch is known (rotation comes from the first frame)."""
    info = reader.info
    return HDR10Writer(
        path,
        format=fmt,
        width=info.width,
        height=info.height,
        time_base=info.time_base,
        frame_rate=info.frame_rate,
        options=options.encode,
        metadata=metadata,
        sample_aspect_ratio=info.sample_aspect_ratio,
        rotation=batch.rotation,
        copy_streams=streams,
    )


def _run_operator(
    operator: Operator, batch: Batch, colour: ColourDescription, timings: dict[str, float]
) -> Nits:
    """Call the operator, turning its unexpected failures into :class:`EngineError`."""
    t = time.perf_counter()
    try:
        nits = operator(batch.rgb, colour)
    except ItmError:
        raise
    except Exception as exc:
        raise EngineError(f"operator '{operator.name}' failed: {exc}") from exc
    timings["operator"] += time.perf_counter() - t
    if nits.shape != batch.rgb.shape or nits.dtype != np.float32:
        raise EngineError(
            f"operator '{operator.name}' returned {nits.dtype} {nits.shape}; "
            f"expected float32 {batch.rgb.shape}"
        )
    return nits


@dataclass(frozen=True)
class ImageResult:
    """One converted still: where it went, its light statistics (cd/m², max of R, G, B) and stage times."""

    path: Path
    width: int
    height: int
    format: str
    max_nits: float
    average_nits: float
    operator: str
    operator_params: dict[str, float | str]
    warnings: tuple[str, ...]
    timings: dict[str, float]


def image_format(path: Path) -> ImageFormat:
    """``exr`` or ``png`` from an output suffix.

    Raises
    ------
    InputError
        For any other suffix.
    """
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(
            f"image output suffix '{Path(path).suffix}' is not supported; "
            f"expected one of {sorted(IMAGE_FORMATS)}"
        )
    return fmt


def _write_image(path: Path, nits: Nits, fmt: ImageFormat, *, peak_nits: float) -> None:
    """Write one converted still (H x W x 3 linear BT.2020 cd/m²) as ``fmt``.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    if fmt == "exr":
        write_exr(path, nits)
    else:
        write_pq_png(path, nits, peak_nits=peak_nits)


def convert_image(
    src: Path, dst: Path, operator: Operator, *, max_pixels: int = MAX_PIXELS, name: str | None = None
) -> ImageResult:
    """Convert an SDR still to HDR: OpenEXR (linear BT.2020 cd/m², half) or 16-bit PQ PNG (cICP, mDCV, cLLI).

    The one still-image path: ``itmstream image`` calls it with a local operator, ``POST /v1/images`` from a
    worker thread with an operator that runs on the shared inference pool. The format follows ``dst``'s
    suffix; the file appears atomically (temporary sibling + ``os.replace``).

    Parameters
    ----------
    src, dst : Path
        SDR PNG/JPEG in; ``.png`` or ``.exr`` out.
    operator : Operator
        The ITM operator, called once with the image as a batch of one.
    max_pixels : int, optional
        Largest accepted image (width x height).
    name : str, optional
        What messages call the input (an upload's own name rather than its temporary file's).

    Raises
    ------
    InputError
        Unreadable input, unsupported suffix, or ``dst`` naming the input itself.
    OutputError
        The destination cannot be written (:class:`InsufficientStorageError` when the disk is full).
    EngineError
        The operator failed.
    """
    src, dst = Path(src), Path(dst)
    fmt = image_format(dst)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise InputError(f"output '{dst}' is the input itself; refusing to overwrite it")
    if not dst.parent.is_dir():
        raise OutputError(f"output directory '{dst.parent}' does not exist")
    timings = {"decode": 0.0, "operator": 0.0, "encode": 0.0}
    t = time.perf_counter()
    image = read_sdr_image(src, max_pixels=max_pixels, name=name)
    timings["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        nits = operator(image.rgb[None], image.colour)[0]
    except ItmError:
        raise
    except Exception as exc:
        raise EngineError(f"operator '{operator.name}' failed: {exc}") from exc
    timings["operator"] = time.perf_counter() - t
    t = time.perf_counter()
    temp = temp_path(dst, "image")
    try:
        _write_image(temp, nits, fmt, peak_nits=operator.peak_nits)
        os.replace(temp, dst)
    except OSError as exc:
        if is_disk_full(exc):
            raise InsufficientStorageError(f"no space left on device while writing '{dst.name}'") from exc
        raise OutputError(f"cannot write '{dst}': {exc.strerror or exc}") from exc
    finally:
        _unlink(temp)
    timings["encode"] = time.perf_counter() - t
    light = nits.max(axis=-1)
    h, w = image.rgb.shape[:2]
    return ImageResult(
        path=dst,
        width=w,
        height=h,
        format=fmt,
        max_nits=float(light.max()),
        average_nits=float(light.mean()),
        operator=operator.name,
        operator_params=operator.params,
        warnings=image.warnings,
        timings=timings,
    )
