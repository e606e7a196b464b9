"""REST clients for conversion jobs and stills: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both are thin: every method is one request (or a poll loop) on ``httpx``, errors become
:class:`clients.errors.APIError` with the server's problem details, and bodies become the dataclasses of
:mod:`clients.models`. Uploads stream from disk with a byte-progress callback; downloads go to ``<dest>.part``
first and resume from its size with an HTTP ``Range`` request, so an interrupted download of a large HDR10
file costs only what was missing.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from clients.errors import APIError, ClientError, JobFailedError, WaitTimeoutError
from clients.models import Job, JobOptions, JobPage, JobState, Operator

ByteProgress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes total or None) as a transfer advances."""
JobProgressCallback = Callable[[Job], None]
"""Called with the job each time a poll sees it change."""

CHUNK = 1 << 20
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _raise_for_problem(response: httpx.Response) -> None:
    """Turn a non-2xx answer into :class:`APIError` (the body must already be read).

    Raises
    ------
    APIError
        If the status is not 2xx.
    """
    if response.is_success:
        return
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    raise APIError.from_response(response.status_code, body, dict(response.headers))


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _upload_request(path: Path, options: JobOptions | None) -> tuple[dict[str, str], dict[str, str], int]:
    size = path.stat().st_size
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(size),
        "X-Filename": path.name,
    }
    return headers, (options or JobOptions()).query(), size


def _content_range(response: httpx.Response, offset: int) -> int | None:
    """Total size from a 206's ``Content-Range: bytes a-b/N``, checking that it starts at ``offset``.

    Raises
    ------
    ClientError
        If the server resumed at another byte than asked.
    """
    unit, _, spec = response.headers.get("content-range", "").partition(" ")
    span, _, total = spec.partition("/")
    start = span.partition("-")[0]
    if unit != "bytes" or not start.isdigit() or int(start) != offset:
        raise ClientError(f"server resumed at {spec or 'an unknown range'!r}; asked for byte {offset}")
    return int(total) if total.isdigit() else None


class _Download:
    """Bookkeeping of one resumable download: the .part file, where it resumes, what to expect."""

    def __init__(self, dest: Path, resume: bool) -> None:
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.offset = self.part.stat().st_size if resume and self.part.is_file() else 0

    def headers(self) -> dict[str, str]:
        return {"Range": f"bytes={self.offset}-"} if self.offset else {}

    def complete(self, response: httpx.Response) -> bool:
        """Whether a 416 answer (``Content-Range: bytes */N``) says the .part file already holds all N bytes.

        Any other 416 means the .part file belongs to something else, and the download starts over.
        """
        total = response.headers.get("content-range", "").rpartition("/")[2]
        return total.isdigit() and int(total) == self.offset

    def open(self, response: httpx.Response) -> tuple[IO[bytes], int | None]:
        """Open the .part file for the answer: append after a 206, start over after a 200."""
        if response.status_code == 206:
            total = _content_range(response, self.offset)
            return self.part.open("ab"), total
        self.offset = 0
        length = response.headers.get("content-length")
        return self.part.open("wb"), int(length) if length and length.isdigit() else None

    def finish(self, written: int, total: int | None) -> Path:
        """Move the complete file into place.

        Raises
        ------
        ClientError
            If fewer bytes arrived than announced (the .part file stays for a later resume).
        """
        if total is not None and written != total:
            raise ClientError(
                f"download of {self.dest.name} stopped at {written} of {total} bytes; retry to resume"
            )
        self.part.replace(self.dest)
        return self.dest


class _Retry:
    """When to resend a request the server refused as overloaded (503), and after how long."""

    def __init__(self, retries: int, max_backoff_s: float) -> None:
        self.retries = retries
        self.max_backoff_s = max_backoff_s

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop (success, other error, or spent)."""
        if response.status_code != 503 or attempt >= self.retries:
            return None
        try:
            wait = float(response.headers.get("retry-after", ""))
        except ValueError:
            wait = 2.0**attempt
        return max(0.0, min(wait, self.max_backoff_s))


def _final(job: Job) -> Job:
    if job.state is JobState.SUCCEEDED:
        return job
    raise JobFailedError(job.id, job.state.value, job.error)


class Client:
    """Blocking client of the itmstream REST API.

    Parameters
    ----------
    base_url : str
        Service root, e.g. ``http://127.0.0.1:8000``.
    api_key : str, optional
        Bearer token when the server runs with ``ITM_API_KEYS``.
    timeout : httpx.Timeout or float
        Per-request timeouts (uploads and downloads are streamed, so this bounds stalls, not sizes).
    transport : httpx.BaseTransport, optional
        For tests (``httpx.MockTransport``) or custom transports.
    retries : int
        How often a request refused with 503 (queue full) is sent again, after the server's ``Retry-After``
        (capped at ``max_backoff_s``). A 503 means nothing was accepted, so even uploads are safe to repeat.
    max_backoff_s : float
        Longest wait between those attempts.

    Examples
    --------
    >>> with Client("http://127.0.0.1:8000") as api:  # doctest: +SKIP
    ...     api.convert("in.mp4", "out_hdr10.mp4", JobOptions(operator="bt2446a"))
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = _Retry(retries, max_backoff_s)
        self.http = httpx.Client(
            base_url=self.base_url, headers=_auth(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _send(
        self, method: str, url: str, *, body: Callable[[], Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            response = self.http.request(method, url, content=body() if body else None, **kwargs)
            delay = self.retry.delay(response, attempt)
            if delay is None:
                break
            attempt += 1
            time.sleep(delay)
        _raise_for_problem(response)
        return response

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (operators warmed, not draining)."""
        return self.http.get("/readyz").status_code == 200

    def wait_ready(self, timeout: float = 60.0, poll_s: float = 0.2) -> None:
        """Block until the service is ready.

        Raises
        ------
        WaitTimeoutError
            If it is not ready within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.ready():
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"{self.base_url} not ready after {timeout:g} s")
            time.sleep(poll_s)

    def operators(self) -> list[Operator]:
        """Operators the server can run."""
        return [Operator.from_json(item) for item in self._send("GET", "/v1/operators").json()]

    def submit(
        self, path: str | Path, options: JobOptions | None = None, *, on_upload: ByteProgress | None = None
    ) -> Job:
        """Upload an SDR video (streamed from disk) and queue its conversion.

        Raises
        ------
        APIError
            413 too large, 415/422 unusable media or options, 503 queue full (``OverloadedError``).
        """
        path = Path(path)
        headers, params, size = _upload_request(path, options)

        def body() -> Iterator[bytes]:
            sent = 0
            with path.open("rb") as file:
                while chunk := file.read(CHUNK):
                    yield chunk
                    sent += len(chunk)
                    if on_upload:
                        on_upload(sent, size)

        response = self._send("POST", "/v1/jobs", body=body, headers=headers, params=params)
        return Job.from_json(response.json())

    def get(self, job_id: str) -> Job:
        """One job's state and progress."""
        return Job.from_json(self._send("GET", f"/v1/jobs/{job_id}").json())

    def list(self, limit: int = 50, cursor: str | None = None) -> JobPage:
        """One page of jobs, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return JobPage.from_json(self._send("GET", "/v1/jobs", params=params).json())

    def iter_jobs(self, page_size: int = 50) -> Iterator[Job]:
        """Every job, following ``next_cursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.list(page_size, cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job and delete its files (a finished job is removed)."""
        self._send("DELETE", f"/v1/jobs/{job_id}")

    def wait(
        self,
        job_id: str,
        *,
        on_progress: JobProgressCallback | None = None,
        poll_s: float = 0.5,
        timeout: float | None = None,
    ) -> Job:
        """Poll until the job is final; call ``on_progress`` whenever it changed.

        Raises
        ------
        JobFailedError
            If it ends failed or cancelled.
        WaitTimeoutError
            If it is still active after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None
        while True:
            job = self.get(job_id)
            if on_progress and (last is None or job.updated_at != last.updated_at or job.state != last.state):
                on_progress(job)
            last = job
            if job.state.final:
                return _final(job)
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(f"job {job_id} still {job.state.value} after {timeout:g} s")
            time.sleep(poll_s)

    def download(
        self, job_id: str, dest: str | Path, *, on_progress: ByteProgress | None = None, resume: bool = True
    ) -> Path:
        """Save the job's HDR10 result to ``dest``, resuming a previous partial download if there is one.

        Raises
        ------
        APIError
            409 if the job has not succeeded, 404 if it does not exist.
        ClientError
            If the transfer ended short (call again to resume).
        """
        state = _Download(Path(dest), resume)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/result", headers=state.headers()) as response:
            if response.status_code == 416:
                if state.complete(response):
                    return state.finish(state.offset, state.offset)
                state.part.unlink(missing_ok=True)
                return self.download(job_id, dest, on_progress=on_progress, resume=False)
            if not response.is_success:
                response.read()
                _raise_for_problem(response)
            file, total = state.open(response)
            written = state.offset
            with file:
                for chunk in response.iter_bytes(CHUNK):
                    file.write(chunk)
                    written += len(chunk)
                    if on_progress:
                        on_progress(written, total)
        return state.finish(written, total)

    def convert(
        self,
        src: str | Path,
        dest: str | Path,
        options: JobOptions | None = None,
        *,
        on_upload: ByteProgress | None = None,
        on_progress: JobProgressCallback | None = None,
        on_download: ByteProgress | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Submit, wait and download in one call; returns the finished job.

        Raises
        ------
        APIError, JobFailedError, WaitTimeoutError
            As the steps do.
        """
        job = self.submit(src, options, on_upload=on_upload)
        job = self.wait(job.id, on_progress=on_progress, timeout=timeout)
        self.download(job.id, dest, on_progress=on_download)
        return job

    def convert_image(
        self, image: str | Path | bytes, *, format: str = "png", options: JobOptions | None = None
    ) -> bytes:
        """Convert one SDR PNG/JPEG still; returns a PQ PNG (with cICP) or a linear EXR.

        Raises
        ------
        APIError
            If the image is refused.
        """
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        params = {**(options or JobOptions()).query(), "format": format}
        for key in ("codec", "crf", "preset", "container"):
            params.pop(key, None)
        return self._send(
            "POST",
            "/v1/images",
            body=lambda: data,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
        ).content


class AsyncClient:
    """The asyncio form of :class:`Client` (same methods, awaited)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = _Retry(retries, max_backoff_s)
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=_auth(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def _send(
        self, method: str, url: str, *, body: Callable[[], Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            response = await self.http.request(method, url, content=body() if body else None, **kwargs)
            delay = self.retry.delay(response, attempt)
            if delay is None:
                break
            attempt += 1
            await asyncio.sleep(delay)
        _raise_for_problem(response)
        return response

    async def ready(self) -> bool:
        """Whether ``/readyz`` answers 200."""
        return (await self.http.get("/readyz")).status_code == 200

    async def operators(self) -> list[Operator]:
        """Operators the server can run."""
        return [Operator.from_json(item) for item in (await self._send("GET", "/v1/operators")).json()]

    async def submit(
        self, path: str | Path, options: JobOptions | None = None, *, on_upload: ByteProgress | None = None
    ) -> Job:
        """Upload an SDR video (streamed from disk, reads in a thread) and queue its conversion.

        Raises
        ------
        APIError
            As :meth:`Client.submit`.
        """
        path = Path(path)
        headers, params, size = _upload_request(path, options)

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            with path.open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, CHUNK):
                    yield chunk
                    sent += len(chunk)
                    if on_upload:
                        on_upload(sent, size)

        response = await self._send("POST", "/v1/jobs", body=body, headers=headers, params=params)
        return Job.from_json(response.json())

    async def get(self, job_id: str) -> Job:
        """One job's state and progress."""
        return Job.from_json((await self._send("GET", f"/v1/jobs/{job_id}")).json())

    async def list(self, limit: int = 50, cursor: str | None = None) -> JobPage:
        """One page of jobs, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return JobPage.from_json((await self._send("GET", "/v1/jobs", params=params)).json())

    async def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job and delete its files."""
        await self._send("DELETE", f"/v1/jobs/{job_id}")

    async def wait(
        self,
        job_id: str,
        *,
        on_progress: JobProgressCallback | None = None,
        poll_s: float = 0.5,
        timeout: float | None = None,
    ) -> Job:
        """Poll until the job is final.

        Raises
        ------
        JobFailedError, WaitTimeoutError
            As :meth:`Client.wait`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None
        while True:
            job = await self.get(job_id)
            if on_progress and (last is None or job.updated_at != last.updated_at or job.state != last.state):
                on_progress(job)
            last = job
            if job.state.final:
                return _final(job)
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(f"job {job_id} still {job.state.value} after {timeout:g} s")
            await asyncio.sleep(poll_s)

    async def download(
        self, job_id: str, dest: str | Path, *, on_progress: ByteProgress | None = None, resume: bool = True
    ) -> Path:
        """Save the result to ``dest``, resuming a partial download.

        Raises
        ------
        APIError, ClientError
            As :meth:`Client.download`.
        """
        state = _Download(Path(dest), resume)
        async with self.http.stream("GET", f"/v1/jobs/{job_id}/result", headers=state.headers()) as response:
            if response.status_code == 416:
                if state.complete(response):
                    return state.finish(state.offset, state.offset)
                state.part.unlink(missing_ok=True)
                return await self.download(job_id, dest, on_progress=on_progress, resume=False)
            if not response.is_success:
                await response.aread()
                _raise_for_problem(response)
            file, total = state.open(response)
            written = state.offset
            with file:
                async for chunk in response.aiter_bytes(CHUNK):
                    await asyncio.to_thread(file.write, chunk)
                    written += len(chunk)
                    if on_progress:
                        on_progress(written, total)
        return state.finish(written, total)
