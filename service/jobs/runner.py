"""The job runner: takes queued jobs, converts each in a worker thread, records progress and the outcome.

Frames of every job go through the shared :class:`~service.inference.batcher.DynamicBatcher` (via
:class:`~service.inference.batched.BatchedOperator`), so jobs and live streams share the worker pool;
decoding and encoding run in a thread per job, never on the event loop. With ``isolate`` each job converts
in a child process instead (:mod:`service.jobs.isolated`). With a Ray cluster configured (``scaleout``), each
job is cut into segments that Ray tasks convert (:mod:`service.scaleout.cluster`): progress and ETA then
count frames over all segments, and cancelling the job cancels its outstanding tasks.

Cancellation is a :class:`threading.Event` per running job, which the pipeline polls between batches. A
graceful shutdown cancels running conversions and puts them back to ``queued``, so they resume on the next
start.
"""

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from service.errors import ItmError, JobCancelledError
from service.inference.batched import BatchedOperator
from service.inference.batcher import DynamicBatcher
from service.jobs.config import JobConfig
from service.jobs.isolated import Outcome, run_isolated
from service.jobs.models import JobState
from service.jobs.store import JobRecord, JobStore
from service.memory import release_free_memory
from service.metrics import Metrics
from service.operators.registry import plugin_paths

if TYPE_CHECKING:
    from service.scaleout.cluster import SegmentEvent

log = logging.getLogger(__name__)

JOB_STAGE_METRICS = {"decode": "decode", "colour": "postprocess", "encode": "encode"}
"""Pipeline stage -> ``itm_stage_seconds`` stage (nits -> Y'CbCr 4:2:0 10-bit is the job's postprocess)."""

JOB_BATCH_FRAMES = 8
"""Frames a job has in flight on the shared pool at once: enough to keep every inference worker busy."""

STOP_WAIT_S = 30.0
"""How long a stopping runner waits for running conversions to notice their cancel event."""

Converter = Callable[..., object]
"""``convert_video(src, dst, operator, options, *, progress, cancel)`` or a stand-in with that signature."""


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class Runner:
    """``concurrency`` runner tasks draining one queue of job ids."""

    def __init__(
        self,
        config: JobConfig,
        store: JobStore,
        batcher: DynamicBatcher,
        metrics: Metrics,
        on_change: Callable[[], None],
        converter: Converter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.batcher = batcher
        self.metrics = metrics
        self.on_change = on_change
        """Called after rows changed state (the ``itm_jobs`` gauge)."""
        self._converter = converter
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self.deleting: set[str] = set()
        """Jobs being deleted: not started, and a cancelled one ends ``cancelled``, not re-queued."""
        self.stopping = False
        self._last_progress: dict[str, float] = {}

    def enqueue(self, job_id: str) -> None:
        """Schedule a queued job."""
        self._queue.put_nowait(job_id)

    def converting(self) -> set[str]:
        """Ids of the jobs converting in this process now."""
        return set(self._cancel)

    def start(self) -> list["asyncio.Task[None]"]:
        """Start the runner tasks (the caller cancels them after :meth:`stop_conversions`)."""
        loop = asyncio.get_running_loop()
        return [loop.create_task(self._loop(), name=f"itm-job-{i}") for i in range(self.config.concurrency)]

    async def stop_conversions(self) -> None:
        """Cancel running conversions (they return to ``queued``) and wait for them to notice."""
        self.stopping = True
        for event in self._cancel.values():
            event.set()
        deadline = time.perf_counter() + STOP_WAIT_S
        while self._cancel and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)  # conversions notice the event between batches

    async def cancel(self, job_id: str) -> None:
        """Stop the job's conversion if it runs, and wait until it has."""
        event = self._cancel.get(job_id)
        if event is not None:
            event.set()
            while job_id in self._cancel:
                await asyncio.sleep(0.01)

    async def _loop(self) -> None:
        while True:
            job_id = await self._queue.get()
            if self.stopping:
                return
            record = self.store.get(job_id)
            if record is None or record.state is not JobState.QUEUED or job_id in self.deleting:
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
        self.on_change()
        started = time.perf_counter()
        try:
            outcome = await asyncio.to_thread(self._convert, record, cancel, asyncio.get_running_loop())
        except asyncio.CancelledError:
            cancel.set()  # the conversion thread stops at its next batch
            self.store.update(record.id, state=JobState.QUEUED, frames_done=0, fps=0.0, eta_s=None)
            raise
        except JobCancelledError:
            if self.stopping and record.id not in self.deleting:
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
            # In-process runs count their frames in BatchedOperator; child processes and Ray tasks do not.
            if self._converter is None and (isinstance(outcome, Outcome) or self.config.scaleout):
                operator = record.options.operator or self.config.default_operator
                self.metrics.frames_total.labels(endpoint="jobs", operator=operator).inc(frames)
            _remove(record.upload_path)
            self.store.update(
                record.id,
                state=JobState.SUCCEEDED,
                result_bytes=size,
                frames_done=frames,
                frames_total=frames,
                eta_s=0.0,
                expires_at=time.time() + self.config.ttl_s,
            )
            log.info("job %s: %d frames in %.1f s", record.id, frames, time.perf_counter() - started)
        finally:
            self._cancel.pop(record.id, None)
            self._last_progress.pop(record.id, None)
            final = self.store.get(record.id)
            if final is not None and final.state in (JobState.FAILED, JobState.CANCELLED):
                _remove(record.upload_path)
                _remove(record.result_path)
            self.on_change()

    def _segment_moved(self, event: "SegmentEvent") -> None:
        self.metrics.segment_moved(event.previous, event.state, event.seconds)

    def _convert(self, record: JobRecord, cancel: threading.Event, loop: asyncio.AbstractEventLoop) -> object:
        from service.pipeline import ConvertOptions, convert_video
        from service.video.decode import DecodeOptions
        from service.video.encode import EncodeOptions

        config = self.config
        spec, peak = config.spec_for(record.options)
        operator = BatchedOperator(spec, peak, self.batcher, loop, self.metrics)
        options = ConvertOptions(
            encode=EncodeOptions(
                codec=record.options.codec,
                crf=record.options.crf,
                preset=record.options.preset,
                threads=max(1, (os.cpu_count() or 1) // 2),
            ),
            decode=DecodeOptions(max_width=config.max_width, max_height=config.max_height),
            batch_size=JOB_BATCH_FRAMES,
        )
        if self._converter is None and config.isolate:
            return run_isolated(
                record.upload_path,
                record.result_path,
                spec.name,
                dict(spec.params),
                {
                    "codec": record.options.codec,
                    "crf": record.options.crf,
                    "preset": record.options.preset,
                    "threads": max(1, (os.cpu_count() or 1) // 2),
                },
                {"max_width": config.max_width, "max_height": config.max_height},
                progress=self._progress(record.id),
                cancel=cancel,
                plugins=plugin_paths(),
            )
        if self._converter is None and config.scaleout is not None:
            from service.scaleout.cluster import convert_video_segmented

            return convert_video_segmented(
                record.upload_path,
                record.result_path,
                spec,
                replace(options, encode=replace(options.encode, threads=0), batch_size=1),  # workers' CPUs
                config=config.scaleout,
                progress=self._progress(record.id),
                cancel=cancel,
                on_segment=self._segment_moved,
                name=record.filename,
            )
        converter = self._converter or convert_video
        return converter(
            record.upload_path,
            record.result_path,
            operator,
            options,
            progress=self._progress(record.id),
            cancel=cancel,
        )
