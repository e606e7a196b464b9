"""SQLite persistence of jobs under the data dir, so a restart finds every job it accepted.

One connection guarded by a lock, shared by the event loop and the conversion threads (progress updates);
WAL mode keeps readers from blocking the writer. Queries are tiny, so they run inline.
"""

import base64
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from service.jobs.models import JobOptions, JobState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    filename TEXT NOT NULL,
    options TEXT NOT NULL,
    upload_path TEXT NOT NULL,
    result_path TEXT NOT NULL,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0,
    fps REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    error TEXT,
    result_bytes INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC, id DESC);
"""


@dataclass(frozen=True)
class JobRecord:
    """One row of the job table (times are Unix seconds)."""

    id: str
    state: JobState
    created_at: float
    updated_at: float
    expires_at: float
    filename: str
    options: JobOptions
    upload_path: Path
    result_path: Path
    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    result_bytes: int | None = None
    attempts: int = 0


def _row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        state=JobState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        filename=row["filename"],
        options=JobOptions.model_validate(json.loads(row["options"])),
        upload_path=Path(row["upload_path"]),
        result_path=Path(row["result_path"]),
        frames_done=row["frames_done"],
        frames_total=row["frames_total"],
        fps=row["fps"],
        eta_s=row["eta_s"],
        error=row["error"],
        result_bytes=row["result_bytes"],
        attempts=row["attempts"],
    )


def _cursor(record: JobRecord) -> str:
    return base64.urlsafe_b64encode(f"{record.created_at!r}|{record.id}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[float, str]:
    try:
        created, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return float(created), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cursor '{cursor}' is not one this server issued") from exc


class JobStore:
    """CRUD on the ``jobs`` table."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def insert(self, record: JobRecord) -> None:
        """Add a new job."""
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, created_at, updated_at, expires_at, filename, options,"
                " upload_path, result_path, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.state.value,
                    record.created_at,
                    record.updated_at,
                    record.expires_at,
                    record.filename,
                    record.options.model_dump_json(),
                    str(record.upload_path),
                    str(record.result_path),
                    record.attempts,
                ),
            )

    def get(self, job_id: str) -> JobRecord | None:
        """The job, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _row(row)

    def update(self, job_id: str, **fields: object) -> JobRecord | None:
        """Set columns (``state`` may be a :class:`JobState`), bump ``updated_at``; return the new row."""
        fields = {k: (v.value if isinstance(v, JobState) else v) for k, v in fields.items()}
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        """Remove the row."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def by_state(self, *states: JobState) -> list[JobRecord]:
        """Jobs in any of ``states``, oldest first (the order they run in)."""
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created_at, id",
                [s.value for s in states],
            ).fetchall()
        return [_row(r) for r in rows]

    def ids(self) -> set[str]:
        """Every job id in the table (start-up uses it to find folders that belong to no job)."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs").fetchall()
        return {row["id"] for row in rows}

    def expired(self, now: float) -> list[JobRecord]:
        """Jobs whose TTL has run out."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE expires_at < ?", (now,)).fetchall()
        return [_row(r) for r in rows]

    def page(self, limit: int, cursor: str | None = None) -> tuple[list[JobRecord], str | None]:
        """Newest-first page of ``limit`` jobs after ``cursor``, and the cursor of the next page.

        Raises
        ------
        ValueError
            If the cursor is malformed.
        """
        query = "SELECT * FROM jobs"
        args: list[object] = []
        if cursor:
            created, job_id = _parse_cursor(cursor)
            query += " WHERE (created_at < ?) OR (created_at = ? AND id < ?)"
            args += [created, created, job_id]
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit + 1)
        with self._lock:
            rows = [_row(r) for r in self._db.execute(query, args).fetchall()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (_cursor(rows[-1]) if more and rows else None)

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (for the ``itm_jobs`` gauge)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        counts = dict.fromkeys(JobState, 0)
        for row in rows:
            counts[JobState(row["state"])] = row["n"]
        return counts


def with_state(record: JobRecord, state: JobState) -> JobRecord:
    """A copy of ``record`` in ``state`` (for responses built before the row is re-read)."""
    return replace(record, state=state)
