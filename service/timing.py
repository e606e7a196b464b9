"""Per-stage wall time inside one batch, so ``itm_stage_seconds`` can tell the model from the colour math.

An operator is a black box to the worker pool; the clock is how it reports where its time went (preprocess,
backbone, head, postprocess) without the pool knowing how any operator is built.
"""

import time


class StageClock:
    """Laps of a stopwatch, each charged to a named stage (repeated names accumulate).

    >>> clock = StageClock()
    >>> clock.lap("preprocess") >= 0.0
    True
    >>> sorted(clock.seconds)
    ['preprocess']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> float:
        """Charge the time since the previous lap (or since creation) to ``stage``; returns that time."""
        now = time.perf_counter()
        elapsed = now - self._last
        self._last = now
        self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        return elapsed
