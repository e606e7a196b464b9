"""Request bodies streamed to disk with the size limit enforced while streaming (raw or multipart).

Never holds a whole upload in memory: chunks go to a file in the data dir's ``tmp`` folder as they arrive
(written in batches of about 1 MiB from a thread), and the request is refused with 413 the moment the
running total passes the limit, without reading the rest. A disk that fills up meanwhile is a 507, with the
partial file removed.
"""

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart import MultipartParser
from python_multipart.exceptions import ParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from service.api.problems import ApiError, PayloadTooLargeError
from service.errors import InputError, InsufficientStorageError, is_disk_full

_FLUSH_BYTES = 1 << 20
FILE_FIELD = "file"
FIELD_LIMIT = 64 * 1024
"""Longest non-file form field (options are a few hundred bytes)."""
_HOW = f"send the upload as the '{FILE_FIELD}' part (curl: -F {FILE_FIELD}=@clip.mp4)"


@dataclass
class Upload:
    """A received body: the file on disk, the client's file name, and any other form fields."""

    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)
    named: bool = True
    """Whether the client named the file (``filename`` is the default name otherwise)."""

    @property
    def shown_name(self) -> str:
        """How messages call the upload: the client's file name, or ``upload`` when it sent none."""
        return self.filename if self.named else "upload"

    def discard(self) -> None:
        """Delete the file (on refusal or failure, so uploads never leak)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _Sink:
    """Buffers chunks and appends them to a file from a worker thread."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._file: IO[bytes] = path.open("wb")

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLargeError(f"upload exceeds the limit of {self.limit} bytes")
        self._buffer.append(data)
        self._buffered += len(data)

    @property
    def should_flush(self) -> bool:
        return self._buffered >= _FLUSH_BYTES

    async def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            await asyncio.to_thread(self._file.write, data)

    async def close(self) -> None:
        await self.flush()
        await asyncio.to_thread(self._file.close)

    def abort(self) -> None:
        # close() flushes Python's buffer first, which fails again on a full disk; it closes the fd anyway.
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def _map_disk_full(received: Callable[[], int]) -> Iterator[None]:
    """Turn ENOSPC / EDQUOT while storing an upload into :class:`InsufficientStorageError`.

    A full disk is the server's condition, not a bug in the request or in us: clients get 507 and may retry
    once space is freed, instead of a 500 "internal server error".

    Raises
    ------
    InsufficientStorageError
        For ENOSPC / EDQUOT; other errors pass through unchanged.
    """
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise InsufficientStorageError(
            f"no space left on device for the upload ({received()} bytes received; {exc.strerror}): "
            "the server's disk is full; retry once jobs have expired or been deleted"
        ) from exc


def _safe_name(name: str, default: str) -> str:
    base = Path(name.replace("\\", "/")).name.strip()
    cleaned = "".join(c for c in base if c.isalnum() or c in "._- ")[:128]
    return cleaned or default


async def receive_upload(request: Request, tmp_dir: Path, limit: int, default_name: str) -> Upload:
    """Stream the request body to ``tmp_dir``: raw body, or the ``file`` part of multipart/form-data.

    Raises
    ------
    PayloadTooLargeError
        If the body (or the declared Content-Length) exceeds ``limit``.
    InsufficientStorageError
        If the disk fills up (ENOSPC / EDQUOT) while the body is stored; the partial file is removed.
    InputError
        If the body is empty or a multipart body has no ``file`` part.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"upload of {declared} bytes exceeds the limit of {limit} bytes")
    path = tmp_dir / f"{secrets.token_hex(8)}.part"
    sink: _Sink | None = None
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    try:
        with _map_disk_full(lambda: 0 if sink is None else sink.size):
            tmp_dir.mkdir(parents=True, exist_ok=True)
            sink = _Sink(path, limit)
            if content_type == b"multipart/form-data":
                upload = await _multipart(request, sink, params.get(b"boundary"), default_name)
            else:
                upload = await _raw(request, sink, default_name)
            await sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if upload.size == 0:
        upload.discard()
        raise InputError("the upload is empty (0 bytes)")
    return upload


async def _raw(request: Request, sink: _Sink, default_name: str) -> Upload:
    async for chunk in request.stream():
        sink.add(chunk)
        if sink.should_flush:
            await sink.flush()
    name = request.headers.get("x-filename") or request.query_params.get("filename")
    return Upload(sink.path, _safe_name(name or default_name, default_name), sink.size, named=bool(name))


@dataclass
class _Part:
    """Parser state of the multipart part being read."""

    header: bytes = b""
    value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None


async def _multipart(request: Request, sink: _Sink, boundary: bytes | None, default_name: str) -> Upload:
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary")
    fields: dict[str, str] = {}
    state = _Part()
    field_value: list[bytes] = []
    seen_file = False
    errors: list[BaseException] = []

    def on_part_begin() -> None:
        state.headers = {}
        field_value.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header.lower()] = state.value
        state.header = b""
        state.value = b""

    def on_headers_finished() -> None:
        nonlocal seen_file
        _, options = parse_options_header(state.headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        state.name = name
        state.filename = filename.decode("utf-8", "replace") if filename is not None else None
        if name == FILE_FIELD:
            if seen_file:
                errors.append(InputError("only one 'file' part is accepted"))
            seen_file = True
        elif state.filename is not None:  # a file under another name: -F video=@clip.mp4
            detail = f"multipart body has no '{FILE_FIELD}' part: '{name}' carries a file; {_HOW}"
            errors.append(InputError(detail))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if errors:
            return
        if state.name == FILE_FIELD:
            try:
                sink.add(data[start:end])
            except PayloadTooLargeError as exc:
                errors.append(exc)
        else:
            field_value.append(data[start:end])
            if sum(map(len, field_value)) > FIELD_LIMIT:
                errors.append(
                    InputError(
                        f"form field '{state.name}' is longer than {FIELD_LIMIT // 1024} KiB, too long "
                        f"for an option; if it is the upload, {_HOW}"
                    )
                )

    def on_part_end() -> None:
        name = state.name
        if name is not None and name != FILE_FIELD:
            fields[name] = b"".join(field_value).decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    filename: str | None = None
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if errors:
                raise errors[0]
            if state.name == FILE_FIELD and state.filename:
                filename = state.filename
            if sink.should_flush:
                await sink.flush()
        parser.finalize()
    except ParseError as exc:  # a raw body sent as multipart, a wrong boundary, a cut-off body
        message = str(exc).split(" at index")[0]
        raise InputError(
            f"the body is not valid multipart/form-data, as its Content-Type says ({message.lower()}); "
            "send the file as a 'file' part, or the raw bytes with another Content-Type"
        ) from None
    if errors:
        raise errors[0]
    if not seen_file:
        got = f" (its parts: {', '.join(repr(n) for n in list(fields)[:8])})" if fields else ""
        raise InputError(f"multipart body has no '{FILE_FIELD}' part{got}; {_HOW}")
    return Upload(
        sink.path, _safe_name(filename or default_name, default_name), sink.size, fields, named=bool(filename)
    )
