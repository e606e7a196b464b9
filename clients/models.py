"""Plain typed views of the service's JSON bodies (dataclasses, so the client needs no pydantic)."""

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Lifecycle of a conversion job; ``succeeded``, ``failed`` and ``cancelled`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the job can no longer change."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobOptions:
    """How to convert a video; ``None`` leaves the choice to the server's defaults."""

    operator: str | None = None
    mode: str | None = None
    peak_nits: float | None = None
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    container: str | None = None

    def query(self) -> dict[str, str]:
        """The options as query parameters (only those set)."""
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class JobProgress:
    """Frames done of (estimated) total, current speed and the server's ETA."""

    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0
    eta_s: float | None = None

    @property
    def fraction(self) -> float | None:
        """Done fraction in [0, 1], or ``None`` when the total is unknown."""
        if self.frames_total <= 0:
            return None
        return min(1.0, self.frames_done / self.frames_total)


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Job:
    """A conversion job as ``GET /v1/jobs/{id}`` reports it."""

    id: str
    state: JobState
    filename: str
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    progress: JobProgress
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    result_url: str | None = None
    result_bytes: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Job":
        """Parse one job object; unknown fields are ignored so newer servers stay compatible."""
        progress = data.get("progress") or {}
        return cls(
            id=str(data["id"]),
            state=JobState(data["state"]),
            filename=str(data.get("filename", "")),
            created_at=_time(data["created_at"]),
            updated_at=_time(data["updated_at"]),
            expires_at=_time(data["expires_at"]),
            progress=JobProgress(
                frames_done=int(progress.get("frames_done", 0)),
                frames_total=int(progress.get("frames_total", 0)),
                fps=float(progress.get("fps", 0.0)),
                eta_s=None if progress.get("eta_s") is None else float(progress["eta_s"]),
            ),
            options=dict(data.get("options") or {}),
            error=data.get("error"),
            result_url=data.get("result_url"),
            result_bytes=data.get("result_bytes"),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /v1/jobs``; pass ``next_cursor`` back for the next one."""

    items: list[Job]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobPage":
        """Parse a job list body."""
        return cls([Job.from_json(item) for item in data.get("items", [])], data.get("next_cursor"))


@dataclass(frozen=True)
class Operator:
    """An operator the server can run, with its parameter names."""

    name: str
    summary: str
    params: list[dict[str, Any]]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Operator":
        """Parse one entry of ``GET /v1/operators``."""
        return cls(str(data["name"]), str(data.get("summary", "")), list(data.get("params", [])))
