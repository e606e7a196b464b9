"""Pydantic models of every request and response body, so the OpenAPI schema is complete."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from service.jobs.models import FINAL_STATES, JobOptions, JobState

__all__ = [
    "FINAL_STATES",
    "Health",
    "Job",
    "JobList",
    "JobOptions",
    "JobProgress",
    "JobState",
    "OperatorOut",
    "OperatorParam",
    "Problem",
    "ValidationIssue",
]


class ValidationIssue(BaseModel):
    """One reason a request failed validation (an entry of a 422 problem's ``errors``)."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``); every error response of the API is one."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ValidationIssue] | None = None
    """Only on 422 for a malformed request: each parameter or body field that failed."""


class Health(BaseModel):
    """Liveness or readiness answer."""

    status: Literal["ok", "ready"]


class OperatorParam(BaseModel):
    """One tunable parameter of an operator."""

    name: str
    default: float | str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = None


class OperatorOut(BaseModel):
    """An operator the server can run."""

    name: str
    summary: str
    params: list[OperatorParam]


class JobProgress(BaseModel):
    """How far a job is (frames_total is the container's estimate; 0 when unknown)."""

    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0
    eta_s: float | None = None


class Job(BaseModel):
    """A conversion job as the API shows it."""

    id: str
    state: JobState
    created_at: datetime
    updated_at: datetime
    filename: str
    options: JobOptions
    progress: JobProgress
    error: str | None = None
    result_url: str | None = None
    result_bytes: int | None = None
    expires_at: datetime


class JobList(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Job]
    next_cursor: str | None = None
