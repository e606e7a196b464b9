"""Exceptions raised by the itmstream clients.

::

    ClientError                     base of everything below
    ├── APIError                    the server answered with an RFC 9457 problem (status, title, detail)
    │   └── OverloadedError         503 with Retry-After: back off and retry
    ├── JobFailedError              a waited-for job ended ``failed`` or ``cancelled``
    ├── WaitTimeoutError            (also TimeoutError) a job did not finish in time
    └── StreamClosedError           the server closed a frame stream with a non-normal code

Transport failures (connection refused, reset) are left as ``httpx``/``websockets`` exceptions, since the
caller handles those by retrying rather than by reading a problem document.
"""

from typing import Any


class ClientError(Exception):
    """Base class of every error the clients raise themselves."""


class APIError(ClientError):
    """The server refused a request; carries the problem details it sent."""

    def __init__(self, status: int, title: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.retry_after_s = retry_after_s

    @classmethod
    def from_response(cls, status: int, body: Any, headers: dict[str, str]) -> "APIError":
        """Build the error from a non-2xx response (problem+json when the server sent one)."""
        title = detail = ""
        if isinstance(body, dict):
            title = str(body.get("title", ""))
            detail = str(body.get("detail", ""))
        elif isinstance(body, str):
            detail = body[:500]
        retry: float | None = None
        raw = headers.get("retry-after")
        if raw is not None:
            try:
                retry = float(raw)
            except ValueError:
                retry = None
        kind = OverloadedError if status == 503 else cls
        return kind(status, title or "error", detail, retry)


class OverloadedError(APIError):
    """503: the server's queue is full; ``retry_after_s`` says when to try again."""


class JobFailedError(ClientError):
    """A job the client waited for did not succeed."""

    def __init__(self, job_id: str, state: str, error: str | None) -> None:
        super().__init__(f"job {job_id} {state}: {error or 'no reason given'}")
        self.job_id = job_id
        self.state = state
        self.error = error


class WaitTimeoutError(ClientError, TimeoutError):
    """A job was still running when the wait's timeout expired."""


class StreamClosedError(ClientError):
    """The server closed the stream with ``code`` (see docs/PROTOCOL.md §7)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"stream closed with {code}: {reason or 'no reason'}")
        self.code = code
        self.reason = reason
