"""Runs conversion jobs: the one object the API and the lifespan talk to.

It composes three parts, each in its own module: :class:`~service.jobs.admission.Admission` (queue room,
resolved options, the new row), :class:`~service.jobs.recovery.Recovery` (start-up recovery after a crash,
orphan and TTL sweeps) and :class:`~service.jobs.runner.Runner` (conversions, progress, cancellation). The
manager owns what they share: the store, the ``itm_jobs`` gauge, the prober and the background tasks.
"""

import asyncio
import contextlib
import shutil
from pathlib import Path

from service.inference.batcher import DynamicBatcher
from service.jobs.admission import Admission
from service.jobs.config import JobConfig
from service.jobs.models import FINAL_STATES, JobOptions, JobState
from service.jobs.probe import Prober
from service.jobs.recovery import Recovery
from service.jobs.runner import Converter, Runner
from service.jobs.store import JobRecord, JobStore
from service.metrics import Metrics


class JobManager:
    """Owns the job table, the runner tasks and the files under ``<data_dir>/jobs``."""

    def __init__(
        self,
        config: JobConfig,
        store: JobStore,
        batcher: DynamicBatcher,
        metrics: Metrics,
        converter: Converter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.admission = Admission(config, store)
        self.recovery = Recovery(config, store, self._update_gauge)
        self.runner = Runner(config, store, batcher, metrics, self._update_gauge, converter)
        self.prober = Prober()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def jobs_dir(self) -> Path:
        """One folder per job."""
        return self.config.jobs_dir

    @property
    def tmp_dir(self) -> Path:
        """Uploads being received."""
        return self.config.tmp_dir

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover jobs from the store, clear stale temp files, start runners and the TTL sweeper."""
        for job_id in self.recovery.recover():
            self.runner.enqueue(job_id)
        self._update_gauge()
        self._tasks = self.runner.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._sweeper(), name="itm-job-ttl"))

    async def stop(self) -> None:
        """Cancel running conversions (they return to ``queued``) and stop the runners."""
        await self.runner.stop_conversions()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await asyncio.to_thread(self.prober.close)

    # -- admission ---------------------------------------------------------------------------------------

    def check_room(self, queue_size: int) -> None:
        """See :meth:`Admission.check_room`.

        Raises
        ------
        OverloadedError
            If the job queue is full (503 + Retry-After).
        """
        self.admission.check_room(queue_size)

    def queue_slot(self, queue_size: int) -> contextlib.AbstractContextManager[None]:
        """See :meth:`Admission.queue_slot`.

        Raises
        ------
        OverloadedError
            If the job queue is full (503 + Retry-After).
        """
        return self.admission.queue_slot(queue_size)

    def resolve(self, options: JobOptions) -> JobOptions:
        """See :meth:`Admission.resolve`.

        Raises
        ------
        InputError
            If the operator, mode or peak is invalid.
        """
        return self.admission.resolve(options)

    def new_paths(self, filename: str, options: JobOptions) -> tuple[str, Path, Path]:
        """A fresh job id with its upload and result paths (directory created)."""
        return self.admission.new_paths(filename, options)

    def create(
        self, job_id: str, filename: str, options: JobOptions, upload: Path, result: Path
    ) -> JobRecord:
        """Record an accepted upload as a queued job and schedule it.

        Raises
        ------
        InsufficientStorageError
            If the job store's disk is full; the upload's folder is removed (no job owns it).
        """
        record = self.admission.record(job_id, filename, options, upload, result)
        self.runner.enqueue(job_id)
        self._update_gauge()
        return record

    # -- API operations ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job, or ``None`` if unknown or expired."""
        return self.store.get(job_id)

    async def delete(self, job_id: str) -> JobRecord | None:
        """Cancel the job if it is active, then remove its files; the row is removed too if it was final."""
        record = self.store.get(job_id)
        if record is None:
            return None
        was_final = record.state in FINAL_STATES
        self.runner.deleting.add(job_id)
        try:
            await self.runner.cancel(job_id)
            if was_final:
                self.store.delete(job_id)
            else:
                self.store.update(job_id, state=JobState.CANCELLED, error="cancelled by the client")
            shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        finally:
            self.runner.deleting.discard(job_id)
        self._update_gauge()
        return record

    # -- sweeps ------------------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Delete expired final jobs and their files; return how many went."""
        return self.recovery.sweep(now)

    def sweep_orphans(self) -> int:
        """Delete temporaries a killed process left in job folders (not those of running jobs)."""
        return self.recovery.sweep_orphans(self.runner.converting())

    async def _sweeper(self) -> None:
        period = min(max(self.config.ttl_s / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def _update_gauge(self) -> None:
        for state, count in self.store.counts().items():
            self.metrics.jobs.labels(state=state.value).set(count)
