"""Inference worker threads: each owns its operator instances and runs whole batches off the event loop.

Operators are built per thread (a LiteRT interpreter must never be shared between threads) and cached by
their :class:`~service.inference.types.OperatorSpec`. Each worker gives Numba ``cores // workers`` threads so
parallel kernels in concurrent workers do not oversubscribe the machine.
"""

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.packing import pack_rgb10a2, pack_rgb48
from service.inference.types import BatchKey, OperatorSpec
from service.operators import Operator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutput:
    """A batch's per-frame outputs and where its time went, returned to the event loop.

    ``stages`` holds seconds per ``itm_stage_seconds`` stage: the operator's own laps (``preprocess``,
    ``backbone``, ``head`` for ``mqn``) and ``postprocess`` (colour math plus packing for the wire).
    """

    frames: list[npt.NDArray[np.generic]]
    infer_start: float
    infer_end: float
    stages: dict[str, float]


class WorkerPool:
    """A fixed set of inference threads with thread-local operators."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers {workers} must be >= 1")
        self.workers = workers
        self._numba_threads = max(1, (os.cpu_count() or 1) // workers)
        self._local = threading.local()
        self.executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="itm-infer", initializer=self._init_thread
        )

    def _init_thread(self) -> None:
        numba.set_num_threads(min(self._numba_threads, int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))))

    def operator(self, spec: OperatorSpec) -> Operator:
        """Return the calling thread's instance of ``spec``, built on first use.

        Raises
        ------
        ValueError
            If the spec does not describe a valid operator.
        """
        cache: dict[OperatorSpec, Operator] | None = getattr(self._local, "operators", None)
        if cache is None:
            cache = {}
            self._local.operators = cache
        op = cache.get(spec)
        if op is None:
            op = spec.create()
            cache[spec] = op
        return op

    def run_batch(self, key: BatchKey, frames: list[npt.NDArray[np.uint8]]) -> BatchOutput:
        """Convert H x W x 3 uint8 frames (views allowed) and pack each to ``key.output``, in a worker thread.

        Stacking happens here, not on the event loop: it is a full copy of every frame.

        Raises
        ------
        ValueError
            If the frames do not match the operator's input contract.
        """
        op = self.operator(key.operator)
        start = time.perf_counter()
        nits = op(np.stack(frames), key.colour)
        stages = dict(op.clock.seconds)
        mid = time.perf_counter()
        outputs: list[npt.NDArray[np.generic]]
        if key.output == "nits":
            outputs = list(nits)
        elif key.output == "rgb10a2":
            outputs = [pack_rgb10a2(frame) for frame in nits]
        else:
            outputs = [pack_rgb48(frame) for frame in nits]
        end = time.perf_counter()
        stages["postprocess"] = stages.get("postprocess", 0.0) + (end - mid)
        return BatchOutput(outputs, start, end, stages)

    def warm_up(self, specs: list[OperatorSpec], height: int, width: int, timeout_s: float = 600.0) -> None:
        """Build and run every spec once on every worker thread (compiles kernels, loads interpreters).

        A barrier holds each warm-up task until all have started, so every thread gets exactly one.

        Raises
        ------
        ValueError
            If a spec is invalid.
        threading.BrokenBarrierError
            If the workers did not all start within ``timeout_s``.
        """
        barrier = threading.Barrier(self.workers)
        frame = [np.zeros((height, width, 3), np.uint8)]

        def warm() -> None:
            barrier.wait(timeout_s)
            for spec in specs:
                for output in ("nits", "rgb10a2", "rgb48"):
                    key = BatchKey(spec, height, width, ColourDescription.still(), output)
                    self.run_batch(key, frame)

        futures = [self.executor.submit(warm) for _ in range(self.workers)]
        for future in futures:
            future.result()
        log.info("warmed %d operator(s) on %d worker(s)", len(specs), self.workers)

    def shutdown(self) -> None:
        """Stop accepting work and wait for running batches to finish."""
        self.executor.shutdown(wait=True, cancel_futures=True)
