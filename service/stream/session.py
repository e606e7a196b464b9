"""One WebSocket stream: hello, credit-based flow control, live/lossless queuing, in-order results.

Three tasks per connection: the reader (frames, credits, bye), the sender (awaits the oldest in-flight frame,
sends it when a credit allows) and the control sender (drop reports). State changes wake the others through
one event; all of it runs on the event loop, so no locks are needed around the counters.

``live`` frames carry a deadline (received + ``deadline_ms``, or a few of the stream's own frame intervals): a
frame still waiting for a credit or for a worker when it passes is dropped with reason ``deadline``, because a
late live frame is worth nothing. ``lossless`` frames have none and are never dropped.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from service.config import Settings
from service.errors import DeadlineExceededError, EngineError, InputError, ItmError, OverloadedError
from service.inference.batcher import DynamicBatcher
from service.inference.types import BatchKey, FrameResult, OperatorSpec, resolve_spec
from service.metrics import Metrics
from service.stream.protocol import (
    BYTES_PER_PIXEL_IN,
    BYTES_PER_PIXEL_OUT,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_UNSUPPORTED,
    COLOURS,
    DEADLINE_INTERVALS,
    DEADLINE_MAX_S,
    DEADLINE_MIN_S,
    FIRST_INTERVAL_S,
    FRAME_HEADER,
    RESULT_HEADER,
    VERSION,
    Credit,
    Hello,
    ProtocolError,
    clip_reason,
    decode_image,
    parse_frame_header,
    parse_json,
    raw_frame,
    reason_of,
)

log = logging.getLogger(__name__)

INTERVAL_WEIGHT = 0.2
"""Weight of the newest gap in a stream's frame interval (an exponentially weighted mean)."""


@dataclass(eq=False)
class _Frame:
    """A received frame; compared by identity (its pixels are megabytes: no element-wise ``==``, no repr)."""

    seq: int
    client_ts: int
    received: float
    pixels: npt.NDArray[np.uint8] = field(repr=False)
    deadline: float | None = None
    """``time.perf_counter()`` after which a live frame not yet converting is dropped; None for lossless."""


@dataclass(eq=False)
class _InFlight:
    frame: _Frame
    future: "asyncio.Future[FrameResult]"


class TransportClosedError(ConnectionError):
    """The peer went away (no close frame to send)."""


class Transport(Protocol):
    """The message channel a session runs on: an accepted WebSocket, adapted by ``api/routes/stream.py``.

    Every method raises :class:`TransportClosedError` once the peer has gone away.
    """

    async def receive(self) -> str | bytes | None:
        """The next message: text, binary, or ``None`` for a message that carries neither."""
        ...

    async def send_text(self, data: str) -> None:
        """Send a text message."""
        ...

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason``."""
        ...


class StreamSession:
    """Serves one accepted stream until it closes; see docs/PROTOCOL.md.

    Parameters
    ----------
    transport : Transport
        The accepted connection.
    settings : Settings
        Limits (frame size, credits, idle timeout) and the default operator, mode and peak.
    metrics : Metrics
        Where frames, drops and latencies are counted.
    batcher : DynamicBatcher
        The shared batcher the frames are converted on.
    shutting_down : asyncio.Event
        Set when the server stops: the session answers what it accepted and closes with 1001.
    """

    def __init__(
        self,
        transport: Transport,
        settings: Settings,
        metrics: Metrics,
        batcher: DynamicBatcher,
        shutting_down: asyncio.Event,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.metrics = metrics
        self.batcher = batcher
        self.shutting_down = shutting_down
        self.t0 = time.perf_counter()
        self.last_heard = self.t0
        """When the last message arrived (the idle timeout counts from it, or from ``last_answered``)."""
        self.last_answered = self.t0
        """When the last result was sent: a client is not idle while it waits for results."""
        self.id = secrets.token_hex(6)
        self.credits = 0
        self.inflight: deque[_InFlight] = deque()
        self.pending: deque[_Frame] = deque()
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.control: asyncio.Queue[str] = asyncio.Queue()
        self.draining = False
        self.bye_received = False
        self.peak_credits = 0
        """The highest outstanding credit grant so far: after ``bye`` the server closes once it is back."""
        self.interval = FIRST_INTERVAL_S
        """The stream's frame interval (weighted mean of gaps between frames), for the default deadline."""
        self.last_arrival: float | None = None
        self.last_seq = -1
        self.hello: Hello | None = None
        self.key: BatchKey | None = None
        self.max_pending = 1
        self._retry: asyncio.TimerHandle | None = None

    # -- helpers -------------------------------------------------------------------------------------

    def _us(self, t: float) -> int:
        return max(0, int((t - self.t0) * 1e6))

    def _owes_results(self) -> bool:
        """Whether the server is behind: frames it may answer (a credit is free) are not answered yet.

        Frames in flight always hold a credit; pending ones do only while credits exceed frames in flight
        (the batcher refused them). A frame waiting for a credit is the client's move, not ours.
        """
        return bool(self.inflight) or (bool(self.pending) and self.credits > len(self.inflight))

    def _idle_left(self) -> float:
        """Seconds before the client counts as idle: its silence only counts while nothing is owed to it."""
        if self._owes_results():
            return self.settings.stream_idle_timeout_s
        quiet_since = max(self.last_heard, self.last_answered)
        return self.settings.stream_idle_timeout_s - (time.perf_counter() - quiet_since)

    async def _receive(self) -> str | bytes | None:
        """The next message.

        Raises
        ------
        ProtocolError
            1001 "idle timeout" once the client sent nothing for ``stream_idle_timeout_s`` and the server
            owed it nothing meanwhile (a client waiting for results behind a full queue is not idle).
        TransportClosedError
            If the peer went away.
        """
        wait = self.settings.stream_idle_timeout_s
        while True:
            try:
                # Cancelling a receive on timeout loses nothing: the ASGI server's receive is a queue get.
                message = await asyncio.wait_for(self.transport.receive(), wait)
                break
            except TimeoutError:
                wait = self._idle_left()
                if wait <= 0:
                    raise ProtocolError(
                        CLOSE_GOING_AWAY,
                        f"idle timeout: no message for {self.settings.stream_idle_timeout_s:g} s",
                    ) from None
        self.last_heard = time.perf_counter()
        return message

    def _drop(self, seq: int, reason: str) -> None:
        operator = self.key.operator.name if self.key else ""
        self.metrics.frames_dropped_total.labels(endpoint="stream", operator=operator, reason=reason).inc()
        self.control.put_nowait(json.dumps({"type": "drop", "seq": seq, "reason": reason}))

    def _deadline(self, received: float) -> float | None:
        """When a frame received at ``received`` stops being worth converting (None: never, lossless).

        The hello's ``deadline_ms`` if it set one, else ``DEADLINE_INTERVALS`` of the stream's measured frame
        interval, within ``DEADLINE_MIN_S`` … ``DEADLINE_MAX_S``.
        """
        assert self.hello is not None
        if self.hello.mode != "live":
            return None
        if self.hello.deadline_ms is not None:
            return received + self.hello.deadline_ms / 1000
        if self.last_arrival is not None:
            self.interval += INTERVAL_WEIGHT * (received - self.last_arrival - self.interval)
        self.last_arrival = received
        return received + min(DEADLINE_MAX_S, max(DEADLINE_MIN_S, DEADLINE_INTERVALS * self.interval))

    # -- hello ---------------------------------------------------------------------------------------

    async def handshake(self) -> None:
        """Read and validate the hello, answer ``ready``.

        Raises
        ------
        ProtocolError
            For a malformed or unacceptable hello (1003/1008), or an operator whose model the server
            cannot load (1011).
        """
        text = await self._receive()
        if not isinstance(text, str):
            raise ProtocolError(CLOSE_UNSUPPORTED, "expected a JSON hello as the first message, got binary")
        parse_json(text)  # not JSON at all is unsupported data (1003), like any later text message
        try:
            hello = Hello.model_validate_json(text)
        except ValidationError as exc:
            raise ProtocolError(CLOSE_POLICY, reason_of(exc, "hello")) from None
        settings = self.settings
        if hello.width > settings.max_width or hello.height > settings.max_height:
            raise ProtocolError(
                CLOSE_POLICY,
                f"hello: {hello.width}x{hello.height} exceeds the limit "
                f"{settings.max_width}x{settings.max_height}",
            )
        if hello.mode == "lossless" and hello.deadline_ms is not None:
            raise ProtocolError(
                CLOSE_POLICY, "hello.deadline_ms: lossless frames are never dropped, so they take no deadline"
            )
        if hello.credits > settings.stream_max_credits:
            raise ProtocolError(
                CLOSE_POLICY,
                f"hello.credits: {hello.credits} exceeds max_credits {settings.stream_max_credits}",
            )
        try:
            spec: OperatorSpec = await asyncio.to_thread(
                resolve_spec,
                hello.operator or settings.default_operator,
                hello.peak_nits or settings.default_peak_nits,
                hello.operator_mode or settings.default_mode,
            )
        except InputError as exc:
            raise ProtocolError(CLOSE_POLICY, clip_reason(f"hello.operator: {exc}")) from None
        except EngineError as exc:
            # A valid hello the server cannot serve (a learned operator whose model is not installed or
            # does not load): the server's failure, not the client's, so 1011. The full cause names server
            # paths and how to build the model: it goes to the log; the reason must fit in 123 bytes.
            name = hello.operator or settings.default_operator
            log.error("stream %s: operator %r cannot be loaded: %s", self.id, name, exc)
            raise ProtocolError(
                CLOSE_INTERNAL,
                clip_reason(
                    f"hello.operator: '{name}' is not available on this server (its model is not loaded)"
                ),
            ) from exc
        self.hello = hello
        self.credits = self.peak_credits = hello.credits
        self.max_pending = settings.stream_max_credits if hello.mode == "lossless" else 1
        self.key = BatchKey(spec, hello.height, hello.width, COLOURS[hello.colour], hello.output)
        await self.transport.send_text(
            json.dumps(
                {
                    "type": "ready",
                    "version": VERSION,
                    "session": self.id,
                    "width": hello.width,
                    "height": hello.height,
                    "input": hello.input,
                    "output": hello.output,
                    "mode": hello.mode,
                    "colour": hello.colour,
                    "operator": spec.name,
                    "operator_params": dict(spec.params),
                    "credits": self.credits,
                    "max_credits": settings.stream_max_credits,
                    "max_pending": self.max_pending,
                    "frame_header_bytes": FRAME_HEADER.size,
                    "result_header_bytes": RESULT_HEADER.size,
                    "frame_bytes": hello.width * hello.height * BYTES_PER_PIXEL_IN[hello.input],
                    "result_bytes": hello.width * hello.height * BYTES_PER_PIXEL_OUT[hello.output],
                    "idle_timeout_s": settings.stream_idle_timeout_s,
                    "deadline_ms": hello.deadline_ms,
                }
            )
        )

    # -- reader --------------------------------------------------------------------------------------

    async def _reader(self) -> None:
        assert self.hello is not None
        while True:
            message = await self._receive()
            if isinstance(message, bytes):
                await self._on_frame(message)
            elif isinstance(message, str):
                self._on_text(message)
            else:
                raise ProtocolError(CLOSE_UNSUPPORTED, "empty message")

    def _on_text(self, text: str) -> None:
        data = parse_json(text)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "credit":
            try:
                credit = Credit.model_validate(data)
            except ValidationError as exc:
                raise ProtocolError(CLOSE_POLICY, reason_of(exc, "credit")) from None
            limit = self.settings.stream_max_credits
            if self.credits + credit.n > limit:
                raise ProtocolError(
                    CLOSE_POLICY, f"credit: {self.credits} + {credit.n} exceeds max_credits {limit}"
                )
            self.credits += credit.n
            self.peak_credits = max(self.peak_credits, self.credits)
            self._dispatch()
        elif kind == "bye":
            self.bye_received = True
            self.draining = True
            self.changed.set()
        else:
            raise ProtocolError(CLOSE_POLICY, clip_reason(f"unknown message type {kind!r}"))

    async def _on_frame(self, message: bytes) -> None:
        assert self.hello is not None
        received = time.perf_counter()
        seq, flags, client_ts = parse_frame_header(message)
        if self.draining:
            if self.shutting_down.is_set():
                self._drop(seq, "shutdown")
                return
            raise ProtocolError(CLOSE_POLICY, f"frame {seq} after bye")
        if flags != 0:
            raise ProtocolError(CLOSE_POLICY, f"frame {seq}: flags must be 0, got {flags}")
        if seq <= self.last_seq:
            raise ProtocolError(CLOSE_POLICY, f"frame {seq}: seq must increase (last was {self.last_seq})")
        self.last_seq = seq
        hello = self.hello
        payload = memoryview(message)[FRAME_HEADER.size :]
        if hello.input in ("jpeg", "png"):
            start = time.perf_counter()
            pixels = await asyncio.to_thread(
                decode_image, bytes(payload), hello.input, hello.height, hello.width, seq
            )
            self.metrics.observe_stage("decode", time.perf_counter() - start)
        else:
            pixels = raw_frame(payload, hello.input, hello.height, hello.width, seq)
        frame = _Frame(seq, client_ts, received, pixels, self._deadline(received))
        if hello.mode == "live":
            while self.pending:
                self._drop(self.pending.popleft().seq, "stale")
            self.pending.append(frame)
        else:
            if len(self.pending) >= self.max_pending and self.credits - len(self.inflight) <= 0:
                # Every credit is in use and the FIFO is full: this frame breaks "frames sent <= credits
                # granted + max_pending" (credits sent before it were read first). Waiting for room would
                # deadlock, since the only thing that frees room is a credit queued behind this frame.
                raise ProtocolError(
                    CLOSE_POLICY,
                    f"frame {seq}: {self.max_pending} frames already wait for credits; lossless clients may "
                    "send at most credits + max_pending frames ahead",
                )
            while len(self.pending) >= self.max_pending:
                # The server is overloaded (a credit is free but the batcher refused the frame): stop
                # reading, so TCP backpressure blocks the sender until the retry frees a slot.
                self.room.clear()
                await self.room.wait()
            self.pending.append(frame)
        self._dispatch()

    # -- dispatch and send ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start frames while credits exceed frames in flight (never run ahead of the client)."""
        assert self.key is not None and self.hello is not None
        now = time.perf_counter()
        while self.pending and self.credits - len(self.inflight) > 0:
            frame = self.pending.popleft()
            if frame.deadline is not None and now >= frame.deadline:
                self._drop(frame.seq, "deadline")
                continue
            try:
                future = self.batcher.submit(frame.pixels, self.key, deadline=frame.deadline)
            except OverloadedError:
                if self.hello.mode == "live":
                    self._drop(frame.seq, "overloaded")
                    continue
                self.pending.appendleft(frame)
                if self._retry is None:
                    self._retry = asyncio.get_running_loop().call_later(0.005, self._retry_dispatch)
                break
            item = _InFlight(frame, future)
            future.add_done_callback(partial(self._on_settled, item))
            self.inflight.append(item)
        if len(self.pending) < self.max_pending:
            self.room.set()
        self.changed.set()

    def _on_settled(self, item: _InFlight, future: "asyncio.Future[FrameResult]") -> None:
        """Report a frame the batcher dropped at its deadline now, and give its credit to the next frame."""
        if future.cancelled() or not isinstance(future.exception(), DeadlineExceededError):
            return
        if self._forget(item):
            self._drop(item.frame.seq, "deadline")
            self._dispatch()

    def _forget(self, item: _InFlight) -> bool:
        """Take ``item`` out of the in-flight queue by identity; False if it has left already.

        Not ``deque.remove``: a miss raises a ValueError whose message is the item's repr, built on the event
        loop for every frame that both the sender and the deadline callback let go.
        """
        for index, candidate in enumerate(self.inflight):
            if candidate is item:
                del self.inflight[index]
                return True
        return False

    def _retry_dispatch(self) -> None:
        self._retry = None
        self._dispatch()

    async def _sender(self) -> None:
        assert self.hello is not None
        operator = self.key.operator.name if self.key else ""
        while True:
            while not (self.inflight and self.credits > 0):
                if self.draining and not self.inflight and not self.pending:
                    return
                self.changed.clear()
                await self.changed.wait()
            item = self.inflight[0]
            try:
                result = await item.future
            except DeadlineExceededError:
                if self._forget(item):  # normally _on_settled has already done this
                    self._drop(item.frame.seq, "deadline")
                continue
            except ItmError as exc:
                raise ProtocolError(CLOSE_INTERNAL, clip_reason(f"frame {item.frame.seq}: {exc}")) from exc
            except ValueError as exc:
                raise ProtocolError(CLOSE_UNSUPPORTED, clip_reason(f"frame {item.frame.seq}: {exc}")) from exc
            self.inflight.popleft()
            sent = time.perf_counter()
            header = RESULT_HEADER.pack(
                item.frame.seq,
                0,
                item.frame.client_ts,
                self._us(item.frame.received),
                self._us(result.infer_start),
                self._us(result.infer_end),
                self._us(sent),
            )
            await self.transport.send_bytes(header + result.data.tobytes())
            self.last_answered = time.perf_counter()
            self.credits -= 1
            self.metrics.frame_latency_seconds.labels(endpoint="stream").observe(sent - item.frame.received)
            self.metrics.frames_total.labels(endpoint="stream", operator=operator).inc()
            self._dispatch()

    async def _control_sender(self) -> None:
        while True:
            text = await self.control.get()
            await self.transport.send_text(text)

    async def _on_shutdown(self) -> None:
        await self.shutting_down.wait()
        self.draining = True
        self.changed.set()

    async def _credits_returned(self) -> None:
        """Wait until the client's outstanding credits are back at their highest level (or shutdown).

        After ``bye`` every frame is answered; a client returning one credit per result reaches that level
        exactly with its credit for the last result, so closing then never overtakes a credit it still sends.
        """
        while self.credits < self.peak_credits and not self.shutting_down.is_set():
            self.changed.clear()
            await self.changed.wait()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the stream until it ends; always frees its queue entries and in-flight frames."""
        tasks: list[asyncio.Task[None]] = []
        code, reason = CLOSE_NORMAL, "bye"
        try:
            try:
                await self.handshake()
            except ProtocolError as exc:
                await self._close(exc.code, exc.reason)
                return
            reader = asyncio.create_task(self._reader())
            sender = asyncio.create_task(self._sender())
            control = asyncio.create_task(self._control_sender())
            watcher = asyncio.create_task(self._on_shutdown())
            tasks = [reader, sender, control, watcher]
            done, _ = await asyncio.wait({reader, sender, control}, return_when=asyncio.FIRST_COMPLETED)
            finished = done.pop()
            ended = {sender}
            if finished is sender and finished.exception() is None and self.bye_received:
                # Every frame is answered. The close sequence of PROTOCOL.md §7: the client closes (then the
                # reader sees the disconnect), or its credits come back and the server closes.
                settled = asyncio.create_task(self._credits_returned())
                tasks.append(settled)
                ended.add(settled)
                done, _ = await asyncio.wait({reader, control, settled}, return_when=asyncio.FIRST_COMPLETED)
                finished = done.pop()
            error = finished.exception()
            if isinstance(error, ProtocolError):
                code, reason = error.code, error.reason
            elif error is not None or finished not in ended:
                return  # the peer closed or vanished: nothing to close, just free everything
            elif self.shutting_down.is_set():
                code, reason = CLOSE_GOING_AWAY, "server shutting down"
            # Flush drop reports queued before the end.
            while not self.control.empty():
                await self.transport.send_text(self.control.get_nowait())
            await self._close(code, reason)
        except (TransportClosedError, RuntimeError, OSError):
            return
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                # gather collects the tasks' exceptions without re-raising them here: an ``await task`` would
                # add this frame to each exception's traceback, and this frame holds the tasks, so every
                # ended stream's frames and results would stay in a reference cycle until a full GC.
                await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()
            if self._retry is not None:
                self._retry.cancel()
            for item in self.inflight:
                item.future.cancel()
            self.inflight.clear()
            self.pending.clear()

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(TransportClosedError, RuntimeError, OSError):
            await self.transport.close(code, clip_reason(reason))
