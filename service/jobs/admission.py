"""Admission of jobs: queue room (counting uploads being admitted), resolved options, folders, the row."""

import contextlib
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from service.errors import InsufficientStorageError, OverloadedError
from service.jobs.config import JobConfig
from service.jobs.models import JobOptions, JobState
from service.jobs.store import JobRecord, JobStore


class Admission:
    """Decides whether a job may be queued and records it; the runner takes it from there."""

    def __init__(self, config: JobConfig, store: JobStore) -> None:
        self.config = config
        self.store = store
        self.admitting = 0
        """Uploads holding a queue slot between their last check and their job's creation."""

    def check_room(self, queue_size: int) -> None:
        """Refuse a job when the queued ones plus the slots held by uploads being admitted fill the queue.

        Raises
        ------
        OverloadedError
            If the job queue is full (503 + Retry-After).
        """
        queued = len(self.store.by_state(JobState.QUEUED))
        if queued + self.admitting >= queue_size:
            being = f" and {self.admitting} being admitted" if self.admitting else ""
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
        self.admitting += 1
        try:
            yield
        finally:
            self.admitting -= 1

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

        spec, peak = self.config.spec_for(options)
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
        folder = self.config.jobs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        suffix = Path(filename).suffix.lower()[:8] or ".bin"
        return job_id, folder / f"input{suffix}", folder / f"output{options.container.suffix}"

    def record(
        self, job_id: str, filename: str, options: JobOptions, upload: Path, result: Path
    ) -> JobRecord:
        """Insert an accepted upload as a queued job.

        Raises
        ------
        InsufficientStorageError
            If the job store's disk is full; the upload's folder is removed (no job owns it).
        """
        now = time.time()
        record = JobRecord(
            id=job_id,
            state=JobState.QUEUED,
            created_at=now,
            updated_at=now,
            expires_at=now + self.config.ttl_s,
            filename=filename,
            options=options,
            upload_path=upload,
            result_path=result,
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
        return record
