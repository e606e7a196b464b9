"""Reassembly on the driver: the encoded segments, in order, into one HDR10 file with the video's light level.

The segments are concatenated (video packets unchanged, audio and subtitles copied once from the input) into
a hidden temporary next to the destination; then the single-process path's own finalizing step patches the
content light level into every packet and the container boxes, checks the packet count and renames the
result into place. So a segmented conversion is written, measured and signalled exactly like an in-process
one, and nothing partial is ever at the destination.

MaxCLL is the brightest pixel of any frame and MaxFALL the highest frame-average light of any frame: both are
maxima, so the whole video's values are the maxima of the segments' values. Each segment measures the frames
it hands its encoder (the master, before the encoder sees them), so the different GOP structure of a
segmented encode does not enter them: they equal the in-process values exactly. A segment reports them
rounded and clamped to the mastering peak, and rounding and clamping commute with taking the maximum.

``service.pipeline`` has no public step that finalizes with known light levels, so this module calls its
private ``_finalize`` with a :class:`~service.video.light.LightMeter` holding the combined values; see the
module's ``TODO`` for the public function that should replace it.
"""

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from service.errors import EngineError, InsufficientStorageError, is_disk_full
from service.pipeline import _Encoded, _finalize, _temp_path  # TODO: pipeline.finalize(light=...) (see above)
from service.scaleout.remux import SegmentConcat, SplitVideo
from service.scaleout.task import SegmentOutput
from service.video.hdr10_metadata import ContentLightLevel, MasteringDisplay
from service.video.light import LightMeter


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


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
    pass1, pass2 = _temp_path(dst, "encode"), _temp_path(dst, "final")
    template = _temp_path(dst, "template").with_suffix(".mp4")
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
        encoded = _Encoded(
            info=split.info, frames=meter.frames, duration_s=0.0, started=started, meter=meter, warnings=()
        )
        light, notes = _finalize(pass1, pass2, template, dst, fmt, mastering, encoded, cancel)
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
        for path in (pass1, pass2, template):
            _unlink(path)
    warnings = [*split.warnings, *dict.fromkeys(w for o in seen for w in o.warnings), *copied, *notes]
    return Assembled(meter.frames, light, tuple(warnings), time.perf_counter() - started)
