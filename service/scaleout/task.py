"""What a worker does with one segment: the single-process conversion, unchanged, on a segment-sized file.

:func:`convert_segment` writes the segment it was handed (a small container, see
:mod:`service.video.remux`) into a private scratch directory on the worker, runs
:func:`service.pipeline.convert_video` on it, and returns the encoded file's bytes with the segment's light
statistics. ``convert_video`` takes paths, so the scratch files are the only copy that touches a disk, and
they are on the worker (``/dev/shm`` when it exists); nothing is shared with the driver but bytes in the
object store.

A fresh encoder for every segment starts on an IDR and flushes at the end, so each segment is a closed GOP
that decodes without its neighbours; the encoder settings are the job's, identical for every segment.

The operator is built once per worker process and kept (:func:`worker_operator`): building ``mqn`` loads two
LiteRT interpreters, which would otherwise cost every segment.
"""

import os
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numba

from service.inference.types import OperatorSpec
from service.operators import Operator
from service.operators.registry import register_operator
from service.pipeline import ConvertOptions, convert_video
from service.video.remux import SEGMENT_SUFFIX

_SCRATCH = Path("/dev/shm")


@dataclass(frozen=True)
class SegmentJob:
    """Everything a worker needs besides the segment's bytes; the same for every segment of a conversion."""

    operator: OperatorSpec
    options: ConvertOptions
    """Encoder, decoder (colour resolved by the driver's probe) and mastering display, all explicit."""
    plugins: tuple[str, ...] = ()
    """Extra operator paths (``module:Class``) to register first: a worker starts with the built-ins."""
    threads: int = 1
    """Numba threads: the CPUs the task declared, so tasks packed onto one node do not oversubscribe it."""


@dataclass(frozen=True)
class SegmentOutput:
    """One encoded segment and what the driver needs from it."""

    index: int
    data: bytes
    """The encoded segment: an MP4 whose video starts on an IDR."""
    frames: int
    max_cll: int | None
    max_fall: int | None
    """The segment's light levels, as written (whole cd/m², clamped to the mastering peak). Both are maxima
    over frames, so the whole video's values are the maxima over segments."""
    warnings: tuple[str, ...]
    seconds: float
    """Wall time of the conversion on the worker."""
    timings: dict[str, float] = field(default_factory=dict)
    node_id: str = ""
    """The Ray node that ran it (filled in by the Ray task)."""


@cache
def worker_operator(spec: OperatorSpec, plugins: tuple[str, ...]) -> Operator:
    """The operator of ``spec``, built once per process (a segment's frames run on one thread).

    Raises
    ------
    ValueError
        If a plugin path or the spec is invalid.
    """
    for path in plugins:
        register_operator(path)
    return spec.create()


def _scratch_dir() -> str | None:
    return str(_SCRATCH) if _SCRATCH.is_dir() and os.access(_SCRATCH, os.W_OK) else None


def convert_segment(index: int, job: SegmentJob, data: bytes) -> SegmentOutput:
    """Convert one segment (``data``: its container bytes) and return the encoded segment.

    Raises
    ------
    ItmError
        Whatever :func:`~service.pipeline.convert_video` raises for this segment.
    """
    numba.set_num_threads(max(1, min(job.threads, int(getattr(numba.config, "NUMBA_NUM_THREADS", 1)))))
    operator = worker_operator(job.operator, job.plugins)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="itm-segment-", dir=_scratch_dir()) as scratch:
        src = Path(scratch) / f"segment-{index}{SEGMENT_SUFFIX}"
        dst = Path(scratch) / f"segment-{index}.hdr{SEGMENT_SUFFIX}"
        src.write_bytes(data)
        result = convert_video(src, dst, operator, job.options)
        encoded = dst.read_bytes()
    return SegmentOutput(
        index=index,
        data=encoded,
        frames=result.frames,
        max_cll=result.max_cll,
        max_fall=result.max_fall,
        warnings=result.warnings,
        seconds=time.perf_counter() - started,
        timings=result.timings,
    )
