"""Segment-parallel conversion on a Ray cluster: the driver demuxes and reassembles, Ray tasks convert.

:func:`convert_video_segmented` is the Ray twin of :func:`service.pipeline.convert_video`: the same
arguments (an :class:`~service.inference.types.OperatorSpec` instead of an operator instance, since each
worker builds its own), the same :class:`~service.pipeline.ConversionResult`, the same atomic output, the
same ``progress`` and ``cancel`` contract. In order:

1. The input is probed and cut at keyframes (:func:`~service.scaleout.split.split_video`). Bad input fails
   here, before any task exists.
2. Each segment's bytes go into the object store, and one task per segment is submitted, declaring
   ``num_cpus`` so Ray packs tasks onto cores. Ray retries a task whose worker or node dies
   (``max_retries``); an exception raised by the conversion itself is not retried, as it would only recur.
3. Results are written into the output in segment order as they arrive (:mod:`service.scaleout.assemble`);
   an input segment's object is released when its task ends, an output's once it is written. The first
   failure cancels every outstanding task and fails the conversion with a reason naming the segment.

Ray is imported only here, and only when one of these functions runs: the embedded default never loads it.
"""

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.colour.scaling import DEFAULT_PEAK_NITS
from service.config import ScaleoutSettings
from service.errors import EngineError, InputError, ItmError, JobCancelledError, OutputError
from service.inference.types import OperatorSpec
from service.operators.registry import plugin_paths
from service.pipeline import ConversionResult, ConvertOptions, Progress
from service.scaleout.assemble import assemble
from service.scaleout.split import SplitVideo, split_video
from service.scaleout.task import SegmentJob, SegmentOutput, convert_segment
from service.video.decode import DecodeOptions
from service.video.encode import EncodeOptions, check_codec_container, container_format
from service.video.hdr10_metadata import MasteringDisplay
from service.video.remux import SegmentInput

if TYPE_CHECKING:
    from ray import ObjectRef

log = logging.getLogger(__name__)

LOCAL = "auto"
"""The address that means "this machine": join the Ray instance running here, else start one."""
TASK_NAME = "itm-segment"
"""Ray task name prefix (``itm-segment-5e1f2a-3``: conversion, segment): what ``ray list tasks`` shows."""
_POLL_S = 0.2
"""How often the driver looks at ``cancel`` while it waits for segments."""


@dataclass(frozen=True)
class ScaleoutConfig:
    """Where the cluster is and how a conversion is cut and scheduled (from ``ITM_RAY_*`` settings)."""

    address: str = LOCAL
    """``host:port`` of the cluster's GCS, ``ray://...`` for Ray Client, or :data:`LOCAL`."""
    segment_seconds: float = 10.0
    num_cpus: float = 1.0
    """CPUs each segment task declares (and the threads its operator uses)."""
    max_retries: int = 2
    """Times Ray re-runs a segment whose worker process or node died."""

    @classmethod
    def from_settings(cls, settings: ScaleoutSettings, address: str | None = None) -> "ScaleoutConfig":
        """The config of ``ITM_RAY_ADDRESS`` and ``ITM_SEGMENT_*`` (``address`` overrides the first)."""
        return cls(
            address=address or settings.ray_address or LOCAL,
            segment_seconds=settings.segment_seconds,
            num_cpus=settings.segment_cpus,
            max_retries=settings.segment_retries,
        )

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0:
            raise InputError(f"segment_seconds {self.segment_seconds} is invalid; expected > 0")
        if self.num_cpus <= 0:
            raise InputError(f"num_cpus {self.num_cpus} is invalid; expected > 0")
        if self.max_retries < 0:
            raise InputError(f"max_retries {self.max_retries} is invalid; expected >= 0")


SEGMENT_STATES = ("queued", "running", "done", "failed", "cancelled")
"""What a segment goes through: the first two are current states, the last three outcomes."""


@dataclass(frozen=True)
class SegmentEvent:
    """A segment moved from ``previous`` (empty when new) to ``state``, one of :data:`SEGMENT_STATES`.

    Ray does not tell a driver when a task starts, so ``running`` is the driver's estimate: the cluster has
    ``CPU / num_cpus`` task slots, a segment is running once one is free for it, in submission order.
    """

    index: int
    state: str
    previous: str
    task_name: str
    seconds: float = 0.0
    """Worker seconds of a finished segment."""
    node_id: str = ""


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (once per process; :data:`LOCAL` may start one here).

    Raises
    ------
    EngineError
        If Ray is not installed or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError as exc:
        raise EngineError("Ray is not installed; install itmstream with the 'ray' extra") from exc
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=None if address == LOCAL else address,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot join the Ray cluster at '{address}': {exc}") from exc


def _run_segment(index: int, job: SegmentJob, data: bytes) -> SegmentOutput:
    """The Ray task: convert one segment and say which node did it."""
    import ray

    output = convert_segment(index, job, data)
    return replace(output, node_id=ray.get_runtime_context().get_node_id())


def resolved_options(
    options: ConvertOptions, split: SplitVideo, peak_nits: float, threads: int
) -> ConvertOptions:
    """The options every segment runs with: colour, mastering display and threads decided once, here.

    A segment's own probe sees only its packets in a new container, so the colour description the driver
    resolved from the whole input is passed down explicitly, and so is the mastering display.
    """
    info = split.info
    decode = DecodeOptions(
        max_width=options.decode.max_width,
        max_height=options.decode.max_height,
        transfer=info.colour.transfer,
        primaries=info.colour.primaries,
        matrix=info.matrix,
        range=info.range,
        threads=threads,
    )
    encode = replace(options.encode, threads=threads) if options.encode.threads == 0 else options.encode
    return ConvertOptions(
        encode=encode,
        decode=decode,
        mastering=options.mastering or MasteringDisplay(max_nits=peak_nits),
        batch_size=options.batch_size,
        copy_audio=False,
        copy_subtitles=False,
    )


class _Segments:
    """The tasks of one conversion: submitted, awaited in any order, handed out in segment order."""

    def __init__(
        self,
        split: SplitVideo,
        job: SegmentJob,
        config: ScaleoutConfig,
        name: str,
        on_segment: Callable[[SegmentEvent], None] | None,
    ) -> None:
        import ray

        self.name, self.config = name, config
        self._on_segment = on_segment or (lambda event: None)
        remote = ray.remote(_run_segment)
        job_ref = ray.put(job)
        run = secrets.token_hex(3)
        self.task_names = [f"{TASK_NAME}-{run}-{s.index}" for s in split.segments]
        self.pending: dict[ObjectRef[Any], int] = {}
        self._inputs: dict[int, ObjectRef[Any]] = {}
        self._states: dict[int, str] = {}
        cpus = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        self._slots = max(1, int(cpus // config.num_cpus))
        for segment in split.segments:
            data_ref = ray.put(segment.data)
            ref = remote.options(
                name=self.task_names[segment.index],
                num_cpus=config.num_cpus,
                max_retries=config.max_retries,
                retry_exceptions=False,
            ).remote(segment.index, job_ref, data_ref)
            self.pending[ref] = segment.index
            self._inputs[segment.index] = data_ref
            self._move(segment.index, "queued")
        self._fill_slots()
        # The bytes are in the object store now; the driver keeps only where each segment is.
        self.split = replace(split, segments=tuple(replace(s, data=b"") for s in split.segments))

    def results(self, cancel: threading.Event | None) -> Iterator[SegmentOutput]:
        """Segment outputs in order, each as soon as it and all before it are done.

        Raises
        ------
        JobCancelledError
            ``cancel`` was set (outstanding tasks are cancelled).
        ItmError
            The first segment that failed, named.
        """
        import ray

        done: dict[int, SegmentOutput] = {}
        for index in range(len(self.split.segments)):
            while index not in done:
                if not self.pending:
                    raise EngineError(f"segment {index} of '{self.name}' was never run")
                if cancel is not None and cancel.is_set():
                    raise JobCancelledError("conversion cancelled")
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=_POLL_S)
                for ref in ready:
                    i = self.pending.pop(ref)
                    del self._inputs[i]  # the task is over: its input may leave the object store
                    try:
                        done[i] = ray.get(ref)
                    except Exception as exc:
                        self._move(i, "failed")
                        raise self._error(self.split.segments[i], exc) from exc
                    self._move(i, "done", done[i].seconds, done[i].node_id)
                    self._fill_slots()
            yield done.pop(index)

    def cancel(self) -> None:
        """Cancel every task not finished yet (force: a running segment's worker is stopped)."""
        import ray

        for ref, index in list(self.pending.items()):
            ray.cancel(ref, force=True, recursive=False)
            self._move(index, "cancelled")
        self.pending.clear()
        self._inputs.clear()

    def _move(self, index: int, state: str, seconds: float = 0.0, node_id: str = "") -> None:
        previous = self._states.get(index, "")
        self._states[index] = state
        self._on_segment(SegmentEvent(index, state, previous, self.task_names[index], seconds, node_id))

    def _fill_slots(self) -> None:
        """Count queued segments as running while the cluster has free task slots (see SegmentEvent)."""
        running = sum(state == "running" for state in self._states.values())
        for index in sorted(i for i, state in self._states.items() if state == "queued"):
            if running >= self._slots:
                return
            self._move(index, "running")
            running += 1

    def _error(self, segment: SegmentInput, exc: Exception) -> ItmError:
        """The failure as our error, naming the segment (and the retries, when its worker died)."""
        from ray import exceptions as rx

        where = segment.describe(self.name)
        cause = exc.cause if isinstance(exc, rx.RayTaskError) else exc
        if isinstance(cause, ItmError):
            try:
                return type(cause)(f"{where}: {cause}")
            except TypeError:  # an error class with extra constructor arguments
                return EngineError(f"{where}: {cause}")
        if isinstance(cause, rx.TaskCancelledError):
            return JobCancelledError(f"{where} was cancelled")
        died = {
            rx.WorkerCrashedError: "its worker process died",
            rx.NodeDiedError: "its node died",
            rx.OutOfMemoryError: "its worker ran out of memory",
            rx.ObjectLostError: "its data was lost with a node",
        }
        for kind, reason in died.items():
            if isinstance(cause, kind):
                return EngineError(f"{where} failed after {self.config.max_retries} retries: {reason}")
        return EngineError(f"{where} failed: {type(cause).__name__}: {cause}")


def convert_video_segmented(
    src: Path,
    dst: Path,
    operator: OperatorSpec,
    options: ConvertOptions | None = None,
    *,
    config: ScaleoutConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    on_segment: Callable[[SegmentEvent], None] | None = None,
    name: str | None = None,
) -> ConversionResult:
    """Convert ``src`` to HDR10 at ``dst`` with its segments converted in parallel on Ray.

    Parameters
    ----------
    src, dst : Path
        As for :func:`service.pipeline.convert_video` (``dst`` is replaced atomically).
    operator : OperatorSpec
        The operator each worker builds once (plug-in operators registered here are registered there).
    options : ConvertOptions, optional
        As in-process; ``max_frames`` is not supported.
    config : ScaleoutConfig, optional
        Cluster address, segment length, CPUs per task, retries.
    progress : callable, optional
        Called with frames done over all segments whenever a segment finishes, then once to finalize.
    cancel : threading.Event, optional
        Set it from another thread: outstanding tasks are cancelled and nothing is written.
    on_segment : callable, optional
        Called with every segment's state change (metrics).
    name : str, optional
        What messages call the input (an upload's own name rather than its stored file's).

    Returns
    -------
    ConversionResult

    Raises
    ------
    InputError
        Unusable input or options, before any task is submitted.
    OutputError
        The destination cannot be written.
    JobCancelledError
        ``cancel`` was set.
    EngineError
        A segment failed (named, with its retries when its worker or node died), or Ray is unreachable.
    """
    options = options or ConvertOptions()
    config = config or ScaleoutConfig()
    src, dst = Path(src), Path(dst)
    fmt = container_format(dst)
    check_codec_container(options.encode.codec, fmt)
    if options.max_frames is not None:
        raise InputError("max_frames is not supported by segment-parallel conversion")
    if not dst.parent.is_dir():
        raise OutputError(f"output directory '{dst.parent}' does not exist")
    started = time.perf_counter()
    name = name or src.name
    split = split_video(src, config.segment_seconds, options, name=name)
    peak = float(dict(operator.params).get("peak_nits", DEFAULT_PEAK_NITS))
    threads = max(1, int(config.num_cpus))
    resolved = resolved_options(options, split, peak, threads)
    mastering = resolved.mastering or MasteringDisplay(max_nits=peak)
    job = SegmentJob(operator, resolved, tuple(plugin_paths().values()), threads)
    connect(config.address)
    segments = _Segments(split, job, config, name, on_segment)
    del split  # the segments' bytes are in the object store now
    done_frames = 0
    total = segments.split.frames

    def reported(outputs: Iterator[SegmentOutput]) -> Iterator[SegmentOutput]:
        nonlocal done_frames
        for output in outputs:
            done_frames += output.frames
            if progress is not None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                fps = done_frames / elapsed
                eta = (total - done_frames) / fps if fps > 0 else None
                progress(Progress(done_frames, total, fps, eta))
            yield output
        if progress is not None:  # every segment is written; the light level is patched in next
            fps = done_frames / max(time.perf_counter() - started, 1e-9)
            progress(Progress(done_frames, total, fps, 0.0, "finalize"))

    try:
        outputs = reported(segments.results(cancel))
        assembled = assemble(src, dst, fmt, segments.split, outputs, mastering, cancel, name=name)
    finally:
        segments.cancel()
    encode: EncodeOptions = options.encode
    info = segments.split.info
    log.info(
        "%s: %d segments, %d frames in %.1f s",
        name,
        len(segments.split.segments),
        assembled.frames,
        time.perf_counter() - started,
    )
    params = dict(operator.params)
    return ConversionResult(
        path=dst,
        frames=assembled.frames,
        duration_s=segments.split.segments[-1].end_s - segments.split.segments[0].start_s,
        width=info.width,
        height=info.height,
        codec=encode.codec,
        container=fmt,
        max_cll=assembled.light.max_cll,
        max_fall=assembled.light.max_fall,
        mastering=mastering,
        operator=operator.name,
        operator_params=params,
        warnings=assembled.warnings,
        timings={"finalize": assembled.seconds},
    )
