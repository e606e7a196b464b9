"""A test-only operator for fault injection: BT.2408 everywhere, except that it raises on "poison" frames.

Registered in the server under test through ``ITM_EXTRA_OPERATORS`` (the operator plug-in setting), so the
fault happens inside a real worker thread, in a real batch, exactly where a buggy operator or a failing
interpreter would raise.
"""

import time

import numpy as np

from service.colour.description import ColourDescription
from service.operators.base import Frames, Nits, OperatorInfo
from service.operators.classical import BT2408, PEAK_PARAM

PATH = "tests.faults.faulty_operator:FaultyOperator"
NAME = "faulty"
SLOW_PATH = "tests.faults.faulty_operator:SlowOperator"
SLOW_NAME = "slow"
SLOW_S = 2.0
"""Seconds :class:`SlowOperator` spends on every batch: a job of a few batches outlives any test deadline."""
POISON_RGB = (255, 0, 255)
"""A frame of (nearly) this colour makes the operator raise; no gradient test frame comes close to it."""


def is_poison(frames: Frames) -> np.ndarray:
    """Per frame: is it, on average, saturated magenta (tolerant of codec rounding)?"""
    mean = frames.reshape(frames.shape[0], -1, 3).mean(axis=1)
    return (mean[:, 0] > 200) & (mean[:, 1] < 60) & (mean[:, 2] > 200)  # type: ignore[no-any-return]


class FaultyOperator(BT2408):
    """BT.2408 that raises ``RuntimeError`` when any frame of its batch is a poison frame."""

    info = OperatorInfo(NAME, "test only: bt2408 that raises on magenta frames", (PEAK_PARAM,))

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Raise on a poison frame, else convert like ``bt2408``."""
        if is_poison(frames).any():
            raise RuntimeError("injected fault: poison frame")
        return super().apply(frames, colour)


class SlowOperator(BT2408):
    """BT.2408 that sleeps :data:`SLOW_S` per batch, to hold a job mid-conversion without a big clip."""

    info = OperatorInfo(SLOW_NAME, "test only: bt2408 that takes 2 s per batch", (PEAK_PARAM,))

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Sleep, then convert like ``bt2408``."""
        time.sleep(SLOW_S)
        return super().apply(frames, colour)
