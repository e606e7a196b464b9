"""Dynamic batching with Triton's semantics, one owner task, frames from every stream and job.

A batch closes when it reaches ``max_batch_size`` frames or when its oldest frame has waited
``max_queue_delay_s`` (Triton ``max_queue_delay_microseconds``), whichever comes first. Only frames with the
same :class:`~service.inference.types.BatchKey` (operator, size, colour, output) share a batch. The owner task
forms a batch only when a worker is free, so under load frames accumulate and batches grow on their own.

Each request carries its future and enqueue time (TGI ``Entry``); frames whose future is already done (the
stream went away, the job was cancelled) are skipped before a batch forms and before results are set, so a
vanished client costs no inference. Every operator is per-frame, so a frame's output does not depend on its
batch mates; order within a stream is kept by its caller awaiting its futures in order.

A frame may carry a deadline (a ``live`` stream's frame is worthless once late): if it is still queued when
the deadline passes, a timer takes it out of the queue at once and fails its future with
:class:`~service.errors.DeadlineExceededError`, so it never reaches a worker and frees its queue slot without
waiting for the owner task (which sleeps while every worker is busy).
"""

import asyncio
import contextlib
import logging
import time
from collections import deque

import numpy as np
import numpy.typing as npt

from service.errors import DeadlineExceededError, EngineError, OverloadedError
from service.inference.pool import WorkerPool
from service.inference.types import BatcherConfig, BatchKey, FrameRequest, FrameResult
from service.metrics import Metrics

log = logging.getLogger(__name__)


class DynamicBatcher:
    """Gathers frames into batches and runs them on a :class:`WorkerPool`."""

    def __init__(self, config: BatcherConfig, pool: WorkerPool, metrics: Metrics) -> None:
        self.config = config
        self.pool = pool
        self.metrics = metrics
        self._queues: dict[BatchKey, deque[FrameRequest]] = {}
        self._expiry: dict[FrameRequest, asyncio.TimerHandle] = {}
        """Deadline timers of queued frames that have one; cancelled when the frame joins a batch."""
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._slots = asyncio.Semaphore(pool.workers)
        self._running: set[asyncio.Task[None]] = set()
        self._owner: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Frames queued and not yet in a batch."""
        return self._pending

    def start(self) -> None:
        """Start the owner task on the running loop."""
        if self._owner is None:
            self._owner = asyncio.get_running_loop().create_task(self._run(), name="itm-batcher")

    async def stop(self, drain: bool = True) -> None:
        """Stop forming batches; with ``drain``, first finish every queued and running frame."""
        if drain:
            while self._pending or self._running:
                await asyncio.sleep(0.005)
        if self._owner is not None:
            self._owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._owner
            self._owner = None
        for queue in self._queues.values():
            for request in queue:
                if not request.future.done():
                    request.future.set_exception(EngineError("server shutting down"))
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        self._queues.clear()
        self._pending = 0
        self.metrics.queue_depth.set(0)

    def submit(
        self, frame: npt.NDArray[np.uint8], key: BatchKey, *, deadline: float | None = None
    ) -> "asyncio.Future[FrameResult]":
        """Queue one H x W x 3 uint8 frame; the returned future resolves to its converted output.

        ``deadline`` (``time.perf_counter()`` seconds): if the frame has not joined a batch by then, it leaves
        the queue and its future fails with :class:`DeadlineExceededError`.

        Raises
        ------
        OverloadedError
            If ``queue_size`` frames are already waiting.
        """
        if self._pending >= self.config.queue_size:
            raise OverloadedError(
                f"inference queue is full ({self.config.queue_size} frames); retry shortly",
                retry_after_s=1.0,
            )
        future: asyncio.Future[FrameResult] = asyncio.get_running_loop().create_future()
        request = FrameRequest(frame, key, future, time.perf_counter())
        self._queues.setdefault(key, deque()).append(request)
        if deadline is not None:
            self._expiry[request] = asyncio.get_running_loop().call_later(
                max(0.0, deadline - request.enqueued), self._expire, request
            )
        self._pending += 1
        self.metrics.queue_depth.set(self._pending)
        self._wakeup.set()
        future.add_done_callback(self._on_done)
        return future

    def _expire(self, request: FrameRequest) -> None:
        """Take a frame whose deadline passed out of its queue and fail it (it is still queued: see _take)."""
        del self._expiry[request]
        queue = self._queues.get(request.key)
        if queue is None or request not in queue:
            return  # its caller gave up already and a purge removed it
        queue.remove(request)
        if not queue:
            del self._queues[request.key]
        self._pending -= 1
        self.metrics.queue_depth.set(self._pending)
        self._room.set()
        if not request.future.done():
            waited = time.perf_counter() - request.enqueued
            request.future.set_exception(
                DeadlineExceededError(f"frame waited {waited:.3f} s in the queue and passed its deadline")
            )

    def _on_done(self, future: "asyncio.Future[FrameResult]") -> None:
        if future.cancelled():
            self._wakeup.set()  # let the owner purge it now rather than at the next batch

    async def submit_wait(self, frame: npt.NDArray[np.uint8], key: BatchKey) -> "asyncio.Future[FrameResult]":
        """Like :meth:`submit`, but wait for room instead of failing (for jobs, which must not drop)."""
        while True:
            try:
                return self.submit(frame, key)
            except OverloadedError:
                self._room.clear()
                await self._room.wait()

    def _purge(self) -> None:
        """Forget requests whose caller already gave up (cancelled future)."""
        for key in list(self._queues):
            queue = self._queues[key]
            kept = deque(r for r in queue if not r.future.done())
            for request in queue:
                if request.future.done() and (timer := self._expiry.pop(request, None)) is not None:
                    timer.cancel()
            self._pending -= len(queue) - len(kept)
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
        self.metrics.queue_depth.set(self._pending)

    def _take(self, key: BatchKey) -> list[FrameRequest]:
        queue = self._queues[key]
        batch = [queue.popleft() for _ in range(min(len(queue), self.config.max_batch_size))]
        for request in batch:
            if (timer := self._expiry.pop(request, None)) is not None:
                timer.cancel()
        if not queue:
            del self._queues[key]
        self._pending -= len(batch)
        self.metrics.queue_depth.set(self._pending)
        self._room.set()
        return batch

    async def _next_batch(self) -> tuple[list[FrameRequest], str]:
        """Wait until some key has a full batch or its oldest frame's delay ran out."""
        while True:
            self._purge()
            if not self._queues:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Among full batches, the one whose oldest frame waited longest: a key with a standing backlog
            # (a busy stream) must not starve older frames of other keys (stills, jobs).
            full = [k for k, q in self._queues.items() if len(q) >= self.config.max_batch_size]
            if full:
                return self._take(min(full, key=lambda k: self._queues[k][0].enqueued)), "full"
            key = min(self._queues, key=lambda k: self._queues[k][0].enqueued)
            deadline = self._queues[key][0].enqueued + self.config.max_queue_delay_s
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return self._take(key), "timeout"
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch, reason = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._execute(batch, reason))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[FrameRequest], reason: str) -> None:
        try:
            live = [r for r in batch if not r.future.done()]
            if not live:
                return
            dispatched = time.perf_counter()
            for request in live:
                self.metrics.queue_wait_seconds.observe(dispatched - request.enqueued)
            self.metrics.batch_size.observe(len(live))
            self.metrics.batches_total.labels(reason=reason).inc()
            log.debug("batch of %d (%s) for %s", len(live), reason, live[0].key.operator.name)
            await self._infer(live)
        finally:
            self._slots.release()

    async def _infer(self, requests: list[FrameRequest]) -> None:
        """Run ``requests`` as one batch and resolve their futures.

        When the batch raises, each frame is run again on its own (still in this task's worker slot), so a
        frame that makes the operator fail fails only its own request: its batch mates belong to other
        streams and jobs, and no operator's output depends on batch mates, so re-running them is exact.
        """
        loop = asyncio.get_running_loop()
        frames = [r.frame for r in requests]
        try:
            out = await loop.run_in_executor(self.pool.executor, self.pool.run_batch, requests[0].key, frames)
        except Exception as exc:
            if len(requests) > 1:
                log.warning("batch of %d failed (%s); running its frames one by one", len(requests), exc)
                for request in requests:
                    if not request.future.done():
                        await self._infer([request])
                return
            error = exc if isinstance(exc, ValueError) else EngineError(f"inference failed: {exc}")
            if not requests[0].future.done():
                requests[0].future.set_exception(error)
            return
        for stage, seconds in out.stages.items():
            self.metrics.observe_stage(stage, seconds, len(requests))
        for request, data in zip(requests, out.frames, strict=True):
            if not request.future.done():
                request.future.set_result(
                    FrameResult(data, request.enqueued, out.infer_start, out.infer_end, len(requests))
                )
