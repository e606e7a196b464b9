"""An operator whose frames run on the shared batcher and worker pool, for callers on other threads.

The job runner converts files in a worker thread with :func:`service.pipeline.convert_video`, which calls a
plain :class:`~service.operators.Operator`; this adapter hands each batch's frames to the event loop's
:class:`~service.inference.batcher.DynamicBatcher`, so jobs and live streams share the inference workers.
"""

import asyncio
import time
from typing import ClassVar

import numpy as np

from service.colour.description import ColourDescription
from service.inference.batcher import DynamicBatcher
from service.inference.types import BatchKey, FrameResult, OperatorSpec
from service.metrics import Metrics
from service.operators import Operator, OperatorInfo
from service.operators.base import Frames, Nits


class BatchedOperator(Operator):
    """An operator whose frames run through the shared batcher and worker pool.

    Called from a conversion thread; it hands the frames to the event loop and blocks until they return.
    """

    info: ClassVar[OperatorInfo] = OperatorInfo("batched", "frames run on the shared worker pool")

    def __init__(
        self,
        spec: OperatorSpec,
        peak_nits: float,
        batcher: DynamicBatcher,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics,
    ) -> None:
        super().__init__(peak_nits)
        self.spec = spec
        self._inner = spec.create()
        self._batcher = batcher
        self._loop = loop
        self._metrics = metrics

    @property
    def name(self) -> str:
        """The wrapped operator's name."""
        return self.spec.name

    @property
    def params(self) -> dict[str, float | str]:
        """The wrapped operator's parameters."""
        return self._inner.params

    async def _convert(self, frames: Frames, colour: ColourDescription) -> Nits:
        key = BatchKey(self.spec, frames.shape[1], frames.shape[2], colour, "nits")
        start = time.perf_counter()
        futures: list[asyncio.Future[FrameResult]] = []
        try:
            for frame in frames:
                futures.append(await self._batcher.submit_wait(frame, key))
            results = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:  # the job is failing: its other frames need no inference
                future.cancel()
            raise
        elapsed = time.perf_counter() - start
        for _ in results:
            self._metrics.frame_latency_seconds.labels(endpoint="jobs").observe(elapsed)
        self._metrics.frames_total.labels(endpoint="jobs", operator=self.spec.name).inc(len(results))
        return np.stack([np.asarray(r.data, np.float32) for r in results])

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Convert a batch on the pool; blocks the calling (non-loop) thread.

        Raises
        ------
        EngineError
            If inference fails or the server shuts down meanwhile.
        """
        return asyncio.run_coroutine_threadsafe(self._convert(frames, colour), self._loop).result()
