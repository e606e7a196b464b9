"""Segment-parallel conversion on a Ray cluster: the driver demuxes and reassembles, Ray tasks convert.

:func:`convert_video_segmented` is the Ray twin of :func:`service.pipeline.convert_video`: the same
arguments (an :class:`~service.inference.types.OperatorSpec` instead of an operator instance, since each
worker builds its own), the same :class:`~service.pipeline.ConversionResult`, the same atomic output, the
same ``progress`` and ``cancel`` contract. In order:

1. The input is probed, checked to its end and its cuts at keyframes planned
   (:func:`~service.scaleout.split.plan_video`), holding two segments' packets at most. Bad input fails
   here, before any task exists.
2. Segments are then cut one at a time (:func:`~service.scaleout.split.segment_inputs`) and streamed: each
   one's bytes go into the object store and one task is submitted for it, declaring ``num_cpus`` so Ray packs
   tasks onto cores, while no more than a window of segments (``window``, by default twice the cluster's
   task slots) is out ahead of the oldest segment not yet written. Whenever a segment is written, the next
   is cut and submitted, so the driver and the object store hold a few segments, never the whole input, and
   the cutting overlaps the conversion. Ray retries a task whose worker or node dies (``max_retries``); an
   exception raised by the conversion itself is not retried, as it would only recur.
3. Results are written into the output in segment order as they arrive (:mod:`service.scaleout.assemble`);
   an input segment's object is released when its task ends, an output's once it is written. The first
   failure cancels every outstanding task and fails the conversion with a reason naming the segment.

Ray is imported only here, and only when one of these functions runs: the embedded default never loads it.
"""

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from service.colour.scaling import DEFAULT_PEAK_NITS
from service.config import ScaleoutSettings
from service.errors import EngineError, InputError, ItmError, JobCancelledError, OutputError
from service.inference.types import OperatorSpec
from service.operators.registry import plugin_paths
from service.pipeline import ConversionResult, ConvertOptions, Progress
from service.scaleout.assemble import assemble
from service.scaleout.split import SplitVideo, plan_video, segment_inputs
from service.scaleout.task import SegmentJob, SegmentOutput, convert_segment
from service.video.decode import DecodeOptions
from service.video.encode import EncodeOptions, check_codec_container, container_format
from service.video.hdr10_metadata import MasteringDisplay
from service.video.remux import SegmentInput

if TYPE_CHECKING:
    from ray import ObjectRef

log = logging.getLogger(__name__)

LOCAL = "auto"
"""The address that means "this machine": join the Ray running here, else start one (see :func:`connect`)."""
TASK_NAME = "itm-segment"
"""Ray task name prefix (``itm-segment-5e1f2a-3``: conversion, segment): what ``ray list tasks`` shows."""
_POLL_S = 0.2
"""How often the driver looks at ``cancel`` while it waits for segments."""
RAY_CLIENT_HEAD_ENV: Mapping[str, str] = MappingProxyType({"GRPC_ENABLE_FORK_SUPPORT": "0"})
"""The environment a head that serves Ray Client (``ray://``) must be started in (``ray start --head``).

For each client, the head's Ray Client server forks and execs a server of its own while its gRPC threads
are busy. gRPC's fork handlers then skip their work, and the forked child, before it reaches ``exec``, can
abort in gRPC's poller (``Check failed: next_worker->state == KICKED`` in the head's
``ray_client_server.err``): the client fails with "Starting Ray client server failed" (ray-project/ray#63202;
here 6 of 36 connections while another job loaded the machine, none of 10 when it was idle). Without fork
support gRPC installs no such handlers, which is gRPC's own advice for a process that only forks to exec.
"""
_CLIENT_SERVER_FAILED = "Starting Ray client server failed"
_connection = threading.Lock()
"""Held while :func:`connect` or :func:`disconnect` runs: jobs that start together join Ray once."""
_joined: str | None = None
"""The address :func:`connect` joined, until :func:`disconnect`: set while Ray reports not initialised
means the connection was lost."""


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
    window: int = 0
    """Segments out at most (submitted, or done and waiting for an earlier one) per conversion; 0 means
    twice the cluster's task slots, re-read as segments finish (an autoscaling cluster grows)."""

    @classmethod
    def from_settings(cls, settings: ScaleoutSettings, address: str | None = None) -> "ScaleoutConfig":
        """The config of ``ITM_RAY_ADDRESS`` and ``ITM_SEGMENT_*`` (``address`` overrides the first)."""
        return cls(
            address=address or settings.ray_address or LOCAL,
            segment_seconds=settings.segment_seconds,
            num_cpus=settings.segment_cpus,
            max_retries=settings.segment_retries,
            window=settings.segment_window,
        )

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0:
            raise InputError(f"segment_seconds {self.segment_seconds} is invalid; expected > 0")
        if self.num_cpus <= 0:
            raise InputError(f"num_cpus {self.num_cpus} is invalid; expected > 0")
        if self.max_retries < 0:
            raise InputError(f"max_retries {self.max_retries} is invalid; expected >= 0")
        if self.window < 0:
            raise InputError(f"window {self.window} is invalid; expected >= 0 (0: twice the task slots)")


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


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but loopback (asks the kernel)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def _running_here() -> bool:
    """Whether ``ray.init()`` would join a running Ray (``RAY_ADDRESS``, the last ``ray start``)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # moved in another Ray: assume a start, so the loopback rule still applies
        return False
    try:  # None, as ray.init passes it (Ray's annotation says str)
        return canonicalize_bootstrap_address(None) is not None  # type: ignore[arg-type]
    except (ConnectionError, ValueError):
        return False


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (once per process; :data:`LOCAL` may start one here).

    :data:`LOCAL` joins the Ray instance running on this machine (``RAY_ADDRESS``, else the last ``ray
    start``) and otherwise starts one in this process, which :func:`disconnect` stops again. Ray 2.60's GCS,
    raylet and agents listen on every interface whatever node address they are given, so one is started only
    where loopback is the only interface (a private network namespace, ``unshare -n``), and there it is given
    127.0.0.1 and no auth token (``RAY_AUTH_MODE=disabled`` unless set: see the comment below).

    A ``ray://`` address is joined through Ray Client: its head must run in :data:`RAY_CLIENT_HEAD_ENV`.

    Safe to call from several threads at once (jobs starting together): one joins, the others wait for it.
    A connection that was lost is joined again. Ray Client gives a lost head up after its reconnect grace
    period (30 s); from then on Ray reports itself not initialised, yet keeps the dead client, and
    ``ray.init`` would refuse to connect again ("ray client is already connected"), so the dead client is
    dropped first (``ray.shutdown()``). A job that runs while the head is gone fails; the next one joins the
    cluster again once its head is back. (A driver joined by GCS address rather than ``ray://`` does not get
    here: Ray ends a process whose GCS stays unreachable, "Failed to connect to GCS within ... seconds".)

    Raises
    ------
    EngineError
        If Ray is not installed, the cluster cannot be reached (for Ray Client, a failure to start this
        client's server on the head names the setting above), or :data:`LOCAL` would have to start a Ray
        that other machines could reach.
    """
    try:
        import ray
    except ImportError as exc:
        raise EngineError("Ray is not installed; install itmstream with the 'ray' extra") from exc
    global _joined
    with _connection:
        if ray.is_initialized():
            return
        if _joined is not None:
            log.warning("lost the Ray cluster at '%s'; joining it again", _joined)
            _joined = None
            _drop_lost(ray)
        _init(ray, address)
        _joined = address


def _init(ray: Any, address: str) -> None:
    """``ray.init`` for :func:`connect` (which holds :data:`_connection`), its errors mapped to ours."""
    start: dict[str, Any] = {}
    if address == LOCAL and not _running_here():
        if not only_loopback():
            raise EngineError(
                "no Ray runs on this machine, and one started here would listen on every network interface; "
                "run inside a private network namespace (as root: unshare -n sh -c 'ip link set lo up && "
                "itmstream convert ... --ray auto'), or start a cluster (ray start) and give its address"
            )
        start = {"_node_ip_address": "127.0.0.1", "include_dashboard": False}
        # Ray 2.60 gives a new local instance token auth and saves the token in ~/.ray/auth_token, where
        # every later `ray start --head` on this machine finds it and refuses nodes started without it.
        # Nothing outside this namespace can reach this instance, so it runs without (unless set otherwise).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(
            address=None if address == LOCAL else address,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
            **start,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if _CLIENT_SERVER_FAILED in str(exc):  # the server's traceback: its last line names the head's log
            reason = str(exc).strip().splitlines()[-1]
            env = " ".join(f"{k}={v}" for k, v in RAY_CLIENT_HEAD_ENV.items())
            raise EngineError(
                f"cannot join the Ray cluster at '{address}': {reason} If that log is empty and the head's "
                f"ray_client_server.err shows a gRPC 'Check failed', start the head with {env} in its "
                "environment (see service.scaleout.cluster.RAY_CLIENT_HEAD_ENV)"
            ) from exc
        raise EngineError(f"cannot join the Ray cluster at '{address}': {exc}") from exc
    if start:
        log.info("started a local Ray on 127.0.0.1 (%s)", ray.get_runtime_context().gcs_address)


def disconnect() -> None:
    """Leave the cluster :func:`connect` joined; a Ray it started here (:data:`LOCAL`) stops with it."""
    global _joined
    ray = sys.modules.get("ray")  # never imported (in-process conversions): nothing to leave
    if ray is None:
        return
    with _connection:
        if ray.is_initialized():
            ray.shutdown()
        elif _joined is not None:
            _drop_lost(ray)
        _joined = None


def _drop_lost(ray: Any) -> None:
    """Drop a connection Ray lost (the caller holds :data:`_connection`), so that ``ray.init`` works again."""
    try:
        ray.shutdown()
    except Exception:  # closing a dead Ray Client's channels may fail; the client is dropped all the same
        log.debug("ray.shutdown() of a lost connection failed", exc_info=True)


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Leave the cluster at the end of the block if it was joined inside it (:func:`disconnect`).

    What a command-line run wraps its conversions in: a Ray that ``--ray auto`` started stops with the run,
    while a caller that was connected before (a test calling ``main``) stays connected.
    """
    ray = sys.modules.get("ray")
    connected_before = ray is not None and ray.is_initialized()
    try:
        yield
    finally:
        if not connected_before:
            disconnect()


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
    """The tasks of one conversion: submitted within a window, awaited in any order, handed out in order."""

    def __init__(
        self,
        plan: SplitVideo,
        job: SegmentJob,
        config: ScaleoutConfig,
        name: str,
        on_segment: Callable[[SegmentEvent], None] | None,
    ) -> None:
        import ray

        self.split, self.name, self.config = plan, name, config
        self._on_segment = on_segment or (lambda event: None)
        self._remote = ray.remote(_run_segment)
        self._job_ref = ray.put(job)
        run = secrets.token_hex(3)
        self.task_names = [f"{TASK_NAME}-{run}-{s.index}" for s in plan.segments]
        self.pending: dict[ObjectRef[Any], int] = {}
        """Submitted and not finished: the task's result, and its segment."""
        self._inputs: dict[int, ObjectRef[Any]] = {}
        self._states: dict[int, str] = {}
        self._slots = 1
        self.window = 1
        self._size_window()
        for segment in plan.segments:  # waiting for the cluster, whether in Ray's queue or still in the file
            self._move(segment.index, "queued")

    def results(
        self, inputs: Iterator[SegmentInput], cancel: threading.Event | None
    ) -> Iterator[SegmentOutput]:
        """Segment outputs in order, each as soon as it and all before it are done.

        ``inputs`` yields the planned segments with their bytes; the next is taken only while fewer than
        :attr:`window` segments are out ahead of the next one to hand out (submitted, or done and waiting).

        Raises
        ------
        JobCancelledError
            ``cancel`` was set (outstanding tasks are cancelled).
        ItmError
            The first segment that failed, named.
        """
        import ray

        done: dict[int, SegmentOutput] = {}
        submitted = 0
        count = len(self.split.segments)
        for index in range(count):
            while index not in done:
                if cancel is not None and cancel.is_set():
                    raise JobCancelledError("conversion cancelled")
                while submitted < min(count, index + self.window):
                    segment = next(inputs, None)
                    if segment is None or segment.index != submitted:
                        raise EngineError(f"segment {submitted} of '{self.name}' was never cut")
                    self._submit(segment)
                    submitted += 1
                if not self.pending:
                    raise EngineError(f"segment {index} of '{self.name}' was never run")
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
                    if self.config.window == 0:
                        self._size_window()
                    self._fill_slots()
            yield done.pop(index)  # the caller writes it and drops its bytes

    def _submit(self, segment: SegmentInput) -> None:
        """Put one segment's bytes into the object store and submit its task."""
        import ray

        data_ref = ray.put(segment.data)
        ref = self._remote.options(
            name=self.task_names[segment.index],
            num_cpus=self.config.num_cpus,
            max_retries=self.config.max_retries,
            retry_exceptions=False,
        ).remote(segment.index, self._job_ref, data_ref)
        self.pending[ref] = segment.index
        self._inputs[segment.index] = data_ref
        self._fill_slots()

    def cancel(self) -> None:
        """Cancel every segment not finished yet (force: a running segment's worker is stopped)."""
        import ray

        for ref in self.pending:
            ray.cancel(ref, force=True, recursive=False)
        for index, state in sorted(self._states.items()):
            if state in ("queued", "running"):
                self._move(index, "cancelled")
        self.pending.clear()
        self._inputs.clear()

    def _size_window(self) -> None:
        """Task slots from the cluster's CPUs now; the window from them unless configured."""
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        self._slots = max(1, int(cpus // self.config.num_cpus))
        self.window = self.config.window or 2 * self._slots

    def _move(self, index: int, state: str, seconds: float = 0.0, node_id: str = "") -> None:
        previous = self._states.get(index, "")
        self._states[index] = state
        self._on_segment(SegmentEvent(index, state, previous, self.task_names[index], seconds, node_id))

    def _fill_slots(self) -> None:
        """Count submitted segments as running while the cluster has free task slots (see SegmentEvent)."""
        running = sum(state == "running" for state in self._states.values())
        for index in sorted(i for i in self._inputs if self._states[i] == "queued"):
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
    plan = plan_video(src, config.segment_seconds, options, name=name)
    peak = float(dict(operator.params).get("peak_nits", DEFAULT_PEAK_NITS))
    threads = max(1, int(config.num_cpus))
    resolved = resolved_options(options, plan, peak, threads)
    mastering = resolved.mastering or MasteringDisplay(max_nits=peak)
    job = SegmentJob(operator, resolved, tuple(plugin_paths().values()), threads)
    connect(config.address)
    segments = _Segments(plan, job, config, name, on_segment)
    done_frames = 0
    total = plan.frames

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
        with contextlib.closing(segment_inputs(src, plan, options, name=name)) as inputs:
            outputs = reported(segments.results(inputs, cancel))
            assembled = assemble(src, dst, fmt, plan, outputs, mastering, cancel, name=name)
    finally:
        segments.cancel()
    encode: EncodeOptions = options.encode
    info = plan.info
    log.info(
        "%s: %d segments, %d frames in %.1f s",
        name,
        len(plan.segments),
        assembled.frames,
        time.perf_counter() - started,
    )
    params = dict(operator.params)
    return ConversionResult(
        path=dst,
        frames=assembled.frames,
        duration_s=plan.segments[-1].end_s - plan.segments[0].start_s,
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
