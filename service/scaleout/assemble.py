"""Reassembly on the driver: the encoded segments, in order, into one HDR10 file with the video's light level.

The segments are concatenated (:class:`~service.video.remux.SegmentConcat`: video packets unchanged, audio
and subtitles copied once from the input) into a hidden temporary next to the destination
(:func:`service.pipeline.temp_path`); then the single-process path's own finalizing step
(:func:`service.pipeline.finalize`, given a :class:`~service.video.light.LightMeter` holding the combined
values) patches the content light level into every packet and the container boxes, checks the packet count
and renames the result into place. So a segmented conversion is written, measured and signalled exactly like
an in-process one, and nothing partial is ever at the destination.

MaxCLL is the brightest pixel of any frame and MaxFALL the highest frame-average light of any frame: both are
maxima, so the whole video's values are the maxima of the segments' values. Each segment measures the frames
it hands its encoder (the master, before the encoder sees them), so the different GOP structure of a
segmented encode does not enter them: they equal the in-process values exactly. A segment reports them
rounded and clamped to the mastering peak, and rounding and clamping commute with taking the maximum.
"""

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from service.errors import EngineError, InsufficientStorageError, is_disk_full
from service.pipeline import Encoded, finalize, temp_path
from service.scaleout.split import SplitVideo
from service.scaleout.task import SegmentOutput
from service.video.hdr10_metadata import ContentLightLevel, MasteringDisplay
from service.video.light import LightMeter
from service.video.remux import SegmentConcat


@dataclass(frozen=True)
class Assembled:
    """What reassembly wrote: frames, the light level over all segments, and notes for the result."""

    frames: int
    light: ContentLightLevel
    warnings: tuple[str, ...]
    seconds: float


def combined_meter(outputs: Iterable[SegmentOutput]) -> LightMeter:
    """A light meter holding the maxima over segments (see the module docstring for why that is exact)."""
    meter = LightMeter()
    for output in outputs:
        meter.max_light = max(meter.max_light, float(output.max_cll or 0))
        meter.max_average = max(meter.max_average, float(output.max_fall or 0))
        meter.frames += output.frames
    return meter


def assemble(
    src: Path,
    dst: Path,
    fmt: str,
    split: SplitVideo,
    outputs: Iterable[SegmentOutput],
    mastering: MasteringDisplay,
    cancel: threading.Event | None = None,
    *,
    name: str | None = None,
) -> Assembled:
    """Write the segments of ``outputs`` (in segment order, as they arrive) into ``dst``, atomically.

    Each output's bytes are released once written; ``outputs`` may be a generator that waits for segments.

    Raises
    ------
    OutputError
        The destination cannot be written (:class:`InsufficientStorageError` when the disk is full).
    EngineError
        A segment is missing frames, or the packet count does not match.
    JobCancelledError
        ``cancel`` was set before the rename.
    """
    pass1 = temp_path(dst, "encode")
    started = time.perf_counter()
    concat: SegmentConcat | None = None
    seen: list[SegmentOutput] = []
    copied: list[str] = []
    try:
        for output in outputs:
            segment = split.segments[output.index]
            if output.index != len(seen) or output.frames != segment.frames:
                raise EngineError(
                    f"{segment.describe(name or src.name)} came back as segment {output.index} with "
                    f"{output.frames} frames; expected segment {len(seen)} with {segment.frames}"
                )
            if concat is None:
                concat = SegmentConcat(
                    pass1, format=fmt, first_segment=output.data, source=src, copy_streams=split.copy_streams
                )
            concat.write(output.data, segment.end_s)
            seen.append(replace(output, data=b""))  # written: the bytes need not stay in memory
        if concat is None or len(seen) != len(split.segments):
            raise EngineError(
                f"{len(seen)} of {len(split.segments)} segments of '{name or src.name}' were assembled"
            )
        copied = concat.warnings
        done, concat = concat, None
        done.close()
        meter = combined_meter(seen)
        light, notes = finalize(Encoded(pass1, meter.frames, meter), dst, fmt, mastering, cancel)
    except OSError as exc:
        if concat is not None:
            concat.abort()
        if is_disk_full(exc):
            raise InsufficientStorageError(
                f"no space left on device while writing '{dst.name}'; the partial output was removed"
            ) from exc
        raise
    except BaseException:
        if concat is not None:
            concat.abort()
        raise
    finally:
        pass1.unlink(missing_ok=True)
    warnings = [*split.warnings, *dict.fromkeys(w for o in seen for w in o.warnings), *copied, *notes]
    return Assembled(meter.frames, light, tuple(warnings), time.perf_counter() - started)
