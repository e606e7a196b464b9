"""Recovery after a restart, and the sweeps that keep the data dir clean (orphans, expired jobs).

Restart semantics: at start-up, jobs left ``running`` by a crash are re-queued once (their upload is still
there and the pipeline writes its output atomically, so a half-written result cannot exist); a job that was
already re-run after a crash is marked ``failed`` with the reason, never silently lost.

A process killed with SIGKILL (or by the OOM killer) runs no cleanup, so start-up also sweeps what it left:
the pipeline's hidden temporaries in job folders (:func:`service.pipeline.is_temp_file`), folders that belong
to no job (an upload moved into place just before the kill), and ``succeeded`` rows whose file is gone. The
temp sweep skips jobs converting in this process, so it is safe to run at any time.
"""

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path

from service.jobs.config import JobConfig
from service.jobs.models import FINAL_STATES, JobState
from service.jobs.store import JobStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job interrupted by crashes this many times is failed instead of re-run (it may be what crashes us)."""


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class Recovery:
    """Puts the job table and the job folders back in order at start-up, and expires old jobs later."""

    def __init__(self, config: JobConfig, store: JobStore, on_change: Callable[[], None]) -> None:
        self.config = config
        self.store = store
        self.on_change = on_change
        """Called after rows changed state (the ``itm_jobs`` gauge)."""

    def recover(self) -> list[str]:
        """Clear stale temp files and folders, settle the rows a stopped server left; return the queued ids.

        Only at start-up, before any runner: partial uploads are removed, since no request is in flight.
        """
        jobs_dir, tmp_dir = self.config.jobs_dir, self.config.tmp_dir
        jobs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)  # partial uploads: no request is in flight yet
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_unknown_folders()
        self.sweep_orphans(converting=())
        for record in self.store.by_state(JobState.SUCCEEDED):
            if not record.result_path.is_file():
                self.store.update(
                    record.id,
                    state=JobState.FAILED,
                    result_bytes=None,
                    error="the result file was lost (removed outside the service); submit the video again",
                )
        for record in self.store.by_state(JobState.RUNNING):
            if not record.upload_path.is_file():
                self.store.update(record.id, state=JobState.FAILED, error="upload lost in a server restart")
            elif record.attempts >= MAX_ATTEMPTS:
                shutil.rmtree(jobs_dir / record.id, ignore_errors=True)
                self.store.update(
                    record.id,
                    state=JobState.FAILED,
                    error=f"server stopped while the job ran ({record.attempts} attempts); not retried",
                )
            else:
                log.info("job %s was running when the server stopped; re-queued", record.id)
                self.store.update(record.id, state=JobState.QUEUED, frames_done=0, fps=0.0, eta_s=None)
        return [record.id for record in self.store.by_state(JobState.QUEUED)]

    def sweep(self, now: float | None = None) -> int:
        """Delete expired final jobs and their files; return how many went."""
        removed = 0
        for record in self.store.expired(time.time() if now is None else now):
            if record.state not in FINAL_STATES:
                continue
            shutil.rmtree(self.config.jobs_dir / record.id, ignore_errors=True)
            self.store.delete(record.id)
            removed += 1
        if removed:
            log.info("removed %d expired job(s)", removed)
            self.on_change()
        return removed

    def sweep_orphans(self, converting: Collection[str]) -> int:
        """Delete pipeline temporaries left in job folders by a killed process; return how many went.

        Folders of the jobs in ``converting`` (running in this process) are skipped: their temporaries are in
        use (and are removed by the pipeline itself on success, failure and cancellation).
        """
        from service.pipeline import is_temp_file

        removed = 0
        for folder in self._folders():
            if folder.name in converting:
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
        jobs_dir = self.config.jobs_dir
        return [p for p in jobs_dir.iterdir() if p.is_dir()] if jobs_dir.is_dir() else []
