"""Frame-stream clients (WebSocket ``/v1/stream``): :class:`Stream` (blocking) and :class:`AsyncStream`.

Both follow docs/PROTOCOL.md exactly through :class:`clients.protocol.CreditWindow`: the hello grants
``credits``, each consumed result is answered with ``{"type": "credit", "n": 1}``, and senders wait for
room in the window instead of piling frames into the socket. ``run(frames)`` does all of it for an
iterable of frames and yields :class:`StreamResult` / :class:`StreamDrop` events in arrival order.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from clients.errors import ClientError, StreamClosedError
from clients.protocol import (
    BYE,
    CLOSE_NORMAL,
    CreditWindow,
    Ready,
    StreamDrop,
    StreamEvent,
    StreamOptions,
    credit_message,
    encode_frame,
    frame_payload,
    now_us,
    parse_result,
    parse_text,
)

Frame = npt.NDArray[np.uint8] | bytes


def stream_url(base_url: str) -> str:
    """``ws(s)://host:port/v1/stream`` from a service base URL (http, https, ws or wss).

    Raises
    ------
    ClientError
        If the scheme is none of those.
    """
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ClientError(f"URL scheme '{parts.scheme}' is not supported; expected http(s) or ws(s)")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/stream"):
        path += "/v1/stream"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _closed(exc: ConnectionClosed) -> StreamClosedError:
    frame = exc.rcvd
    return StreamClosedError(frame.code if frame else 1006, frame.reason if frame else "connection lost")


class _Events:
    """Turns server messages into events and credit replies (shared by both transports)."""

    def __init__(self, ready: Ready) -> None:
        self.window = CreditWindow(ready)
        self.bye_sent = False

    def handle(self, message: str | bytes) -> tuple[StreamEvent, int]:
        """The event of one message and the credits to grant back for it.

        Raises
        ------
        ClientError
            On an unexpected message.
        """
        if isinstance(message, bytes):
            result = parse_result(message, self.window.ready, now_us())
            return result, self.window.on_result()
        data = parse_text(message)
        if data["type"] == "drop":
            self.window.on_drop()
            return StreamDrop(int(data["seq"]), str(data.get("reason", ""))), 0
        raise ClientError(f"unexpected message type {data['type']!r}")

    def finished(self, exc: StreamClosedError) -> bool:
        """Whether a close is the normal end: 1000 after our bye with every frame answered."""
        return exc.code == CLOSE_NORMAL and self.bye_sent and self.window.unanswered == 0


class Stream:
    """A blocking frame stream; use :meth:`connect` as a context manager.

    Examples
    --------
    >>> with Stream.connect("http://127.0.0.1:8000", StreamOptions(1280, 720)) as s:  # doctest: +SKIP
    ...     for event in s.run(frames):
    ...         show(event.pixels())
    """

    def __init__(self, ws: ClientConnection, ready: Ready) -> None:
        self.ws = ws
        self.ready = ready
        self._events = _Events(ready)

    @property
    def window(self) -> CreditWindow:
        """The credit bookkeeping (sent, results, drops, outstanding)."""
        return self._events.window

    @classmethod
    def connect(
        cls, url: str, options: StreamOptions, *, api_key: str | None = None, open_timeout: float = 10.0
    ) -> "Stream":
        """Open the socket, send the hello and wait for ``ready``.

        Raises
        ------
        StreamClosedError
            If the server refuses the stream (auth 1008, too many streams 1013, bad hello 1008).
        """
        # Entered as a context manager: websockets >= 17.1 deprecates using connect()'s result directly.
        ws = contextlib.ExitStack().enter_context(
            connect(
                stream_url(url),
                additional_headers=_headers(api_key),
                open_timeout=open_timeout,
                max_size=None,
                compression=None,
            )
        )
        try:
            ws.send(options.hello())
            message = ws.recv(timeout=open_timeout)
            if not isinstance(message, str):
                raise ClientError("expected a JSON 'ready' message after the hello")
            ready = Ready.from_json(parse_text(message))
        except ConnectionClosed as exc:
            ws.close()
            raise _closed(exc) from None
        except BaseException:
            ws.close()
            raise
        return cls(ws, ready)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (abruptly if frames are still unanswered; the server discards them)."""
        self.ws.close()

    def send(self, frame: Frame, client_ts: int | None = None) -> int:
        """Send one frame now and return its ``seq``; call :meth:`can_send` first to respect the window.

        Raises
        ------
        StreamClosedError
            If the server has closed the stream.
        """
        payload = frame_payload(frame, self.ready.input)
        seq = self.window.take_seq()
        try:
            self.ws.send(encode_frame(seq, payload, client_ts))
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        return seq

    def can_send(self, paced: bool = False) -> bool:
        """Whether the credit window has room for another frame (see :meth:`CreditWindow.can_send`)."""
        return self.window.can_send(paced)

    def receive(self, timeout: float | None = None) -> StreamEvent | None:
        """The next result or drop (``None`` if none arrived within ``timeout``); grants credits back.

        Raises
        ------
        StreamClosedError
            When the stream closes, including the normal close after :meth:`bye` (code 1000).
        """
        try:
            message = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        event, grant = self._events.handle(message)
        if grant:
            with contextlib.suppress(ConnectionClosed):
                self.ws.send(credit_message(grant))
        return event

    def bye(self) -> None:
        """Tell the server no more frames follow; it answers the rest and closes with 1000."""
        self._events.bye_sent = True
        with contextlib.suppress(ConnectionClosed):
            self.ws.send(BYE)

    def run(self, frames: Iterable[Frame], fps: float | None = None) -> Iterator[StreamEvent]:
        """Send every frame (at ``fps`` if given, else as fast as the window allows) and yield events.

        Ends after the server's normal close, once every frame is answered.

        Raises
        ------
        StreamClosedError
            If the server closes the stream any other way.
        """
        period = 1.0 / fps if fps else 0.0
        due = time.perf_counter()
        for frame in frames:
            if period:
                while (wait := due - time.perf_counter()) > 0:
                    if (event := self.receive(timeout=wait)) is not None:
                        yield event
                due = max(due + period, time.perf_counter() - period)
            while not self.can_send(paced=bool(period)):
                if (event := self.receive()) is not None:
                    yield event
            self.send(frame)
            while (event := self.receive(timeout=0)) is not None:
                yield event
        self.bye()
        try:
            while True:
                if (event := self.receive()) is not None:
                    yield event
        except StreamClosedError as exc:
            if not self._events.finished(exc):
                raise


class AsyncStream:
    """The asyncio form of :class:`Stream`; ``async with await AsyncStream.connect(...) as s``."""

    def __init__(self, ws: AsyncConnection, ready: Ready) -> None:
        self.ws = ws
        self.ready = ready
        self._events = _Events(ready)
        self._room = asyncio.Event()

    @property
    def window(self) -> CreditWindow:
        """The credit bookkeeping (sent, results, drops, outstanding)."""
        return self._events.window

    @classmethod
    async def connect(
        cls, url: str, options: StreamOptions, *, api_key: str | None = None, open_timeout: float = 10.0
    ) -> "AsyncStream":
        """Open the socket, send the hello and wait for ``ready``.

        Raises
        ------
        StreamClosedError
            If the server refuses the stream.
        """
        ws = await async_connect(
            stream_url(url),
            additional_headers=_headers(api_key),
            open_timeout=open_timeout,
            max_size=None,
            compression=None,
        )
        try:
            await ws.send(options.hello())
            message = await asyncio.wait_for(ws.recv(), open_timeout)
            if not isinstance(message, str):
                raise ClientError("expected a JSON 'ready' message after the hello")
            ready = Ready.from_json(parse_text(message))
        except ConnectionClosed as exc:
            await ws.close()
            raise _closed(exc) from None
        except BaseException:
            await ws.close()
            raise
        return cls(ws, ready)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket."""
        await self.ws.close()

    def can_send(self, paced: bool = False) -> bool:
        """Whether the credit window has room for another frame."""
        return self.window.can_send(paced)

    async def send(self, frame: Frame, client_ts: int | None = None) -> int:
        """Send one frame now and return its ``seq``.

        Raises
        ------
        StreamClosedError
            If the server has closed the stream.
        """
        payload = frame_payload(frame, self.ready.input)
        seq = self.window.take_seq()
        try:
            await self.ws.send(encode_frame(seq, payload, client_ts))
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        return seq

    async def receive(self, timeout: float | None = None) -> StreamEvent | None:
        """The next result or drop (``None`` on timeout); grants credits back.

        Raises
        ------
        StreamClosedError
            When the stream closes, including the normal close after :meth:`bye`.
        """
        try:
            message = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        event, grant = self._events.handle(message)
        self._room.set()
        if grant:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(credit_message(grant))
        return event

    async def bye(self) -> None:
        """No more frames follow; the server answers the rest and closes with 1000."""
        self._events.bye_sent = True
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(BYE)

    async def _pump(self, frames: Iterable[Frame] | AsyncIterable[Frame], fps: float | None) -> None:
        period = 1.0 / fps if fps else 0.0
        due = time.perf_counter()

        async def each() -> AsyncIterator[Frame]:
            if isinstance(frames, AsyncIterable):
                async for item in frames:
                    yield item
            else:
                for item in frames:
                    yield item

        try:
            async for frame in each():
                if period:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due = max(due + period, time.perf_counter() - period)
                while not self.can_send(paced=bool(period)):
                    self._room.clear()
                    await self._room.wait()
                await self.send(frame)
        except BaseException:
            # Unblock the receiving side, which would otherwise wait for results that never come.
            await self.ws.close()
            raise
        await self.bye()

    async def run(
        self, frames: Iterable[Frame] | AsyncIterable[Frame], fps: float | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Send every frame from a background task (at ``fps`` if given) and yield events as they come.

        Raises
        ------
        StreamClosedError
            If the server closes the stream other than normally after the last answer.
        """
        pump = asyncio.create_task(self._pump(frames, fps))
        try:
            while True:
                try:
                    event = await self.receive()
                except StreamClosedError as exc:
                    if self._events.finished(exc):
                        return
                    # A failed sender closes the socket itself: report its error, not the close.
                    await asyncio.wait({pump}, timeout=1.0)
                    if pump.done() and not pump.cancelled() and (error := pump.exception()) is not None:
                        raise error from None
                    raise
                if event is not None:
                    yield event
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, StreamClosedError):
                    await pump
