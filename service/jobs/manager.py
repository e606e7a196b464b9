"""Runs conversion jobs: queueing, recovery after a restart, cancellation, TTL cleanup, file hygiene.

Frames of every job go through the shared :class:`~service.inference.batcher.DynamicBatcher` (via
:class:`~service.inference.batched.BatchedOperator`), so jobs and live streams share the worker pool;
decoding and encoding run in a thread per job, never on the event loop.

Restart semantics: at start-up, jobs left ``running`` by a crash are re-queued once (their upload is still
there and the pipeline writes its output atomically, so a half-written result cannot exist); a job that was
already re-run after a crash is marked ``failed`` with the reason, never silently lost. A graceful shutdown
cancels running conversions and puts them back to ``queued``, so they resume on the next start.

A process killed with SIGKILL (or by the OOM killer) runs no cleanup, so start-up also sweeps what it left:
the pipeline's hidden temporaries in job folders (:func:`service.pipeline.is_temp_file`), folders that belong
to no job (an upload moved into place just before the kill), and ``succeeded`` rows whose file is gone. The
temp sweep skips jobs converting in this process, so it is safe to run at any time.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from service.errors import InsufficientStorageError, ItmError, JobCancelledError, OverloadedError
from service.inference.batched import BatchedOperator
from service.inference.batcher import DynamicBatcher
from service.inference.types import OperatorSpec, resolve_spec
from service.jobs.isolated import Outcome, run_isolated
from service.jobs.models import FINAL_STATES, JobOptions, JobState
from service.jobs.probe import Prober
from service.jobs.store import JobRecord, JobStore
from service.memory import release_free_memory
from service.metrics import Metrics
from service.operators.registry import plugin_paths

log = logging.getLogger(__name__)

JOB_STAGE_METRICS = {"decode": "decode", "colour": "postprocess", "encode": "encode"}
"""Pipeline stage -> ``itm_stage_seconds`` stage (nits -> Y'CbCr 4:2:0 10-bit is the job's postprocess)."""

JOB_BATCH_FRAMES = 8
"""Frames a job has in flight on the shared pool at once: enough to keep every inference worker busy."""

MAX_ATTEMPTS = 2
"""A job interrupted by crashes this many times is failed instead of re-run (it may be what crashes us)."""


Converter = Callable[..., object]
"""``convert_video(src, dst, operator, options, *, progress, cancel)`` or a stand-in with that signature."""


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class JobManager:
    """Owns the job table, the runner tasks and the files under ``<data_dir>/jobs``."""

    def __init__(
        self, data_dir: Path, store: JobStore, batcher: DynamicBatcher, metrics: Metrics, *,
        concurrency: int, ttl_s: float, default_operator: str, default_mode: str, default_peak: float,
        max_width: int, max_height: int, converter: Converter | None = None, isolate: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.jobs_dir = data_dir / "jobs"
        self.tmp_dir = data_dir / "tmp"
        self.store = store
        self.batcher = batcher
        self.metrics = metrics
        self.concurrency = concurrency
        self.ttl_s = ttl_s
        self.default_operator = default_operator
        self.default_mode = default_mode
        self.default_peak = default_peak
        self.max_width = max_width
        self.max_height = max_height
        self._converter = converter
        self.isolate = isolate
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._cancel: dict[str, threading.Event] = {}
        self._deleting: set[str] = set()
        self._stopping = False
        self._last_progress: dict[str, float] = {}
        self._admitting = 0
        """Uploads holding a queue slot between their last check and their job's creation."""
        self.prober = Prober()

    # -- admission ---------------------------------------------------------------------------------------

    def check_room(self, queue_size: int) -> None:
        """Refuse a job when the queued ones plus the slots held by uploads being admitted fill the queue.

        Raises
        ------
        OverloadedError
            If the job queue is full (503 + Retry-After).
        """
        queued = len(self.store.by_state(JobState.QUEUED))
        if queued + self._admitting >= queue_size:
            being = f" and {self._admitting} being admitted" if self._admitting else ""
            raise OverloadedError(
                f"{queued} jobs are already queued{being} (the queue holds {queue_size}); retry later",
                retry_after_s=30.0,
            )

    @contextlib.contextmanager
    def queue_slot(self, queue_size: int) -> Iterator[None]:
        """Hold one job-queue slot until the job is created, or the request fails, inside the ``with``.

        Checking the queue only before an upload lets concurrent uploads all see the same free slot, since
        the job is created after awaiting the body and the probe. The check and the reservation here run with
        no await between them (one event loop), and the job's creation counts it as queued as the slot is
        returned.

        Raises
        ------
        OverloadedError
            If the job queue is full (503 + Retry-After).
        """
        self.check_room(queue_size)
        self._admitting += 1
        try:
            yield
        finally:
            self._admitting -= 1

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover jobs from the store, clear stale temp files, start runners and the TTL sweeper."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # partial uploads: no request is in flight yet
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_unknown_folders()
        self.sweep_orphans()
        for record in self.store.by_state(JobState.SUCCEEDED):
            if not record.result_path.is_file():
                self.store.update(
                    record.id, state=JobState.FAILED, result_bytes=None,
                    error="the result file was lost (removed outside the service); submit the video again",
                )
        for record in self.store.by_state(JobState.RUNNING):
            if not record.upload_path.is_file():
                self.store.update(record.id, state=JobState.FAILED, error="upload lost in a server restart")
            elif record.attempts >= MAX_ATTEMPTS:
                shutil.rmtree(self.jobs_dir / record.id, ignore_errors=True)
                self.store.update(
                    record.id, state=JobState.FAILED,
                    error=f"server stopped while the job ran ({record.attempts} attempts); not retried",
                )
            else:
                log.info("job %s was running when the server stopped; re-queued", record.id)
                self.store.update(record.id, state=JobState.QUEUED, frames_done=0, fps=0.0, eta_s=None)
        for record in self.store.by_state(JobState.QUEUED):
            self._queue.put_nowait(record.id)
        self._update_gauge()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._runner(), name=f"itm-job-{i}") for i in range(self.concurrency)]
        self._tasks.append(loop.create_task(self._sweeper(), name="itm-job-ttl"))

    async def stop(self) -> None:
        """Cancel running conversions (they return to ``queued``) and stop the runners."""
        self._stopping = True
        for event in self._cancel.values():
            event.set()
        deadline = time.perf_counter() + 30.0
        while self._cancel and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)  # conversions notice the event between batches
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await asyncio.to_thread(self.prober.close)

    # -- API operations ----------------------------------------------------------------------------------

    def spec_for(self, options: JobOptions) -> tuple[OperatorSpec, float]:
        """The operator spec and peak a job's options resolve to.

        Raises
        ------
        InputError
            If the operator, mode or peak is invalid.
        """
        name = options.operator or self.default_operator
        peak = options.peak_nits or self.default_peak
        return resolve_spec(name, peak, options.mode or self.default_mode), peak

    def resolve(self, options: JobOptions) -> JobOptions:
        """``options`` with every server default filled in: what the job runs with, stored and reported.

        ``mode`` stays ``None`` for operators that have no modes (it would not be used), and ``crf`` and
        ``preset`` become the codec's defaults, so a job's JSON says exactly how it was converted, and a
        change of the server's defaults later does not change a queued job.

        Raises
        ------
        InputError
            If the operator, mode or peak is invalid.
        """
        from service.video.encode import DEFAULT_CRF, DEFAULT_PRESET

        spec, peak = self.spec_for(options)
        params = dict(spec.params)
        resolved = options.model_dump() | {
            "operator": spec.name,
            "mode": params.get("mode"),
            "peak_nits": float(params.get("peak_nits", peak)),
            "crf": DEFAULT_CRF[options.codec] if options.crf is None else options.crf,
            "preset": options.preset or DEFAULT_PRESET[options.codec],
        }
        return JobOptions.model_validate(resolved)

    def new_paths(self, filename: str, options: JobOptions) -> tuple[str, Path, Path]:
        """A fresh job id with its upload and result paths (directory created)."""
        job_id = secrets.token_hex(8)
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        suffix = Path(filename).suffix.lower()[:8] or ".bin"
        return job_id, folder / f"input{suffix}", folder / f"output{options.container.suffix}"

    def create(
        self, job_id: str, filename: str, options: JobOptions, upload: Path, result: Path
    ) -> JobRecord:
        """Record an accepted upload as a queued job and schedule it.

        Raises
        ------
        InsufficientStorageError
            If the job store's disk is full; the upload's folder is removed (no job owns it).
        """
        now = time.time()
        record = JobRecord(
            id=job_id, state=JobState.QUEUED, created_at=now, updated_at=now, expires_at=now + self.ttl_s,
            filename=filename, options=options, upload_path=upload, result_path=result,
        )
        try:
            self.store.insert(record)
        except sqlite3.Error as exc:
            shutil.rmtree(upload.parent, ignore_errors=True)
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise InsufficientStorageError(
                    "no space left on device for the job store; retry once jobs have expired or been deleted"
                ) from exc
            raise
        self._queue.put_nowait(job_id)
        self._update_gauge()
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The job, or ``None`` if unknown or expired."""
        return self.store.get(job_id)

    async def delete(self, job_id: str) -> JobRecord | None:
        """Cancel the job if it is active, then remove its files; the row is removed too if it was final."""
        record = self.store.get(job_id)
        if record is None:
            return None
        was_final = record.state in FINAL_STATES
        self._deleting.add(job_id)
        try:
            event = self._cancel.get(job_id)
            if event is not None:
                event.set()
                while job_id in self._cancel:
                    await asyncio.sleep(0.01)
            if was_final:
                self.store.delete(job_id)
            else:
                self.store.update(job_id, state=JobState.CANCELLED, error="cancelled by the client")
            shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        finally:
            self._deleting.discard(job_id)
        self._update_gauge()
        return record

    # -- internals -------------------------------------------------------------------------------------

    def _update_gauge(self) -> None:
        for state, count in self.store.counts().items():
            self.metrics.jobs.labels(state=state.value).set(count)

    async def _sweeper(self) -> None:
        period = min(max(self.ttl_s / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Delete expired final jobs and their files; return how many went."""
        removed = 0
        for record in self.store.expired(time.time() if now is None else now):
            if record.state not in FINAL_STATES:
                continue
            shutil.rmtree(self.jobs_dir / record.id, ignore_errors=True)
            self.store.delete(record.id)
            removed += 1
        if removed:
            log.info("removed %d expired job(s)", removed)
            self._update_gauge()
        return removed

    def sweep_orphans(self) -> int:
        """Delete pipeline temporaries left in job folders by a killed process; return how many went.

        Folders of jobs converting in this process are skipped: their temporaries are in use (and are
        removed by the pipeline itself on success, failure and cancellation).
        """
        from service.pipeline import is_temp_file

        removed = 0
        live = set(self._cancel)
        for folder in self._folders():
            if folder.name in live:
                continue
            with contextlib.suppress(FileNotFoundError):  # the job was deleted meanwhile
                for path in list(folder.iterdir()):
                    if path.is_file() and is_temp_file(path):
                        _remove(path)
                        removed += 1
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted conversion", removed)
        return removed

    def _sweep_unknown_folders(self) -> None:
        """Delete job folders with no job row (killed between moving an upload in and recording the job).

        Only at start-up: while serving, a folder exists briefly before its row is inserted.
        """
        known = self.store.ids()
        for folder in self._folders():
            if folder.name not in known:
                log.info("removing %s: it belongs to no job", folder)
                shutil.rmtree(folder, ignore_errors=True)

    def _folders(self) -> list[Path]:
        return [p for p in self.jobs_dir.iterdir() if p.is_dir()] if self.jobs_dir.is_dir() else []

    async def _runner(self) -> None:
        while True:
            job_id = await self._queue.get()
            if self._stopping:
                return
            record = self.store.get(job_id)
            if record is None or record.state is not JobState.QUEUED or job_id in self._deleting:
                continue
            try:
                await self._run(record)
                await asyncio.to_thread(release_free_memory)  # jobs fragment the heap (memory.py)
            except Exception:
                # Recording the outcome failed (e.g. the disk is full under the job store too): keep this
                # runner alive for the next job; the row stays 'running' and is recovered at restart.
                log.exception("job %s: its outcome could not be recorded", job_id)

    def _observe_stages(self, batch_seconds: dict[str, float], frames: int) -> None:
        """Decode, colour (as ``postprocess``) and encode of one job batch into ``itm_stage_seconds``.

        Observed once per frame of the batch (``frames``), like every other stage. The operator's own
        stages are observed by the batcher that ran its frames, so not again here.
        """
        for stage, metric_stage in JOB_STAGE_METRICS.items():
            if stage in batch_seconds:
                self.metrics.observe_stage(metric_stage, batch_seconds[stage], max(1, frames))

    def _progress(self, job_id: str) -> Callable[[object], None]:
        frames_seen = 0

        def report(progress: object) -> None:
            nonlocal frames_seen
            done = int(getattr(progress, "frames_done", 0))
            self._observe_stages(getattr(progress, "batch_seconds", {}), done - frames_seen)
            frames_seen = done
            now = time.perf_counter()
            if now - self._last_progress.get(job_id, 0.0) < 0.2:
                return
            self._last_progress[job_id] = now
            try:
                self.store.update(
                    job_id,
                    frames_done=int(getattr(progress, "frames_done", 0)),
                    frames_total=int(getattr(progress, "frames_total", 0)),
                    fps=float(getattr(progress, "fps", 0.0)),
                    eta_s=getattr(progress, "eta_s", None),
                )
            except sqlite3.Error as exc:
                # Progress is advisory; a store that cannot take it (disk full) must not fail the job,
                # whose own outcome then says what went wrong.
                log.warning("job %s: progress not recorded: %s", job_id, exc)

        return report

    async def _run(self, record: JobRecord) -> None:
        cancel = threading.Event()
        self._cancel[record.id] = cancel
        self.store.update(record.id, state=JobState.RUNNING, attempts=record.attempts + 1, error=None)
        self._update_gauge()
        started = time.perf_counter()
        try:
            outcome = await asyncio.to_thread(self._convert, record, cancel, asyncio.get_running_loop())
        except asyncio.CancelledError:
            cancel.set()  # the conversion thread stops at its next batch
            self.store.update(record.id, state=JobState.QUEUED, frames_done=0, fps=0.0, eta_s=None)
            raise
        except JobCancelledError:
            if self._stopping and record.id not in self._deleting:
                self.store.update(record.id, state=JobState.QUEUED, frames_done=0, fps=0.0, eta_s=None)
            else:
                self.store.update(record.id, state=JobState.CANCELLED, error="cancelled by the client")
        except ItmError as exc:
            log.info("job %s failed: %s", record.id, exc)
            self.store.update(record.id, state=JobState.FAILED, error=str(exc))
        except Exception as exc:
            log.exception("job %s crashed", record.id)
            self.store.update(record.id, state=JobState.FAILED, error=f"internal error: {exc}")
        else:
            size = record.result_path.stat().st_size
            frames = int(getattr(outcome, "frames", 0))
            if isinstance(outcome, Outcome):  # in-process runs count their frames in BatchedOperator
                operator = record.options.operator or self.default_operator
                self.metrics.frames_total.labels(endpoint="jobs", operator=operator).inc(frames)
            _remove(record.upload_path)
            self.store.update(
                record.id, state=JobState.SUCCEEDED, result_bytes=size, frames_done=frames,
                frames_total=frames, eta_s=0.0, expires_at=time.time() + self.ttl_s,
            )
            log.info("job %s: %d frames in %.1f s", record.id, frames, time.perf_counter() - started)
        finally:
            self._cancel.pop(record.id, None)
            self._last_progress.pop(record.id, None)
            final = self.store.get(record.id)
            if final is not None and final.state in (JobState.FAILED, JobState.CANCELLED):
                _remove(record.upload_path)
                _remove(record.result_path)
            self._update_gauge()

    def _convert(self, record: JobRecord, cancel: threading.Event, loop: asyncio.AbstractEventLoop) -> object:
        from service.pipeline import ConvertOptions, convert_video
        from service.video.decode import DecodeOptions
        from service.video.encode import EncodeOptions

        spec, peak = self.spec_for(record.options)
        operator = BatchedOperator(spec, peak, self.batcher, loop, self.metrics)
        options = ConvertOptions(
            encode=EncodeOptions(
                codec=record.options.codec, crf=record.options.crf, preset=record.options.preset,
                threads=max(1, (os.cpu_count() or 1) // 2),
            ),
            decode=DecodeOptions(max_width=self.max_width, max_height=self.max_height),
            batch_size=JOB_BATCH_FRAMES,
        )
        if self._converter is None and self.isolate:
            return run_isolated(
                record.upload_path, record.result_path, spec.name, dict(spec.params),
                {"codec": record.options.codec, "crf": record.options.crf, "preset": record.options.preset,
                 "threads": max(1, (os.cpu_count() or 1) // 2)},
                {"max_width": self.max_width, "max_height": self.max_height},
                progress=self._progress(record.id), cancel=cancel, plugins=plugin_paths(),
            )
        converter = self._converter or convert_video
        return converter(
            record.upload_path, record.result_path, operator, options,
            progress=self._progress(record.id), cancel=cancel,
        )
