"""A test-only operator that kills its own worker process on poison (magenta) frames, once or always.

Loaded by Ray workers through the plug-in registry (the driver registers it; the segment task registers the
same path in the worker), so the fault is a real worker death: Ray sees the process exit and retries.
"""

import os
from pathlib import Path

from service.colour.description import ColourDescription
from service.operators.base import Frames, Nits, OperatorInfo, ParamSpec
from service.operators.classical import BT2408, PEAK_PARAM
from tests.faults.faulty_operator import is_poison

PATH = "tests.service.scaleout.faults:CrashOperator"


class CrashOperator(BT2408):
    """BT.2408 that ``os._exit``s on a poison frame: every time, or only the first time ``marker`` is free."""

    info = OperatorInfo(
        "crash",
        "test only: bt2408 whose worker process dies on magenta frames",
        (
            PEAK_PARAM,
            ParamSpec("marker", "", "file the first crash creates; later calls convert (empty: always)"),
        ),
    )

    def __init__(self, peak_nits: float = 1000.0, marker: str = "") -> None:
        super().__init__(peak_nits)
        self.marker = marker

    @property
    def params(self) -> dict[str, float | str]:
        """Peak and marker."""
        return {**super().params, "marker": self.marker}

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Die on a poison frame (see the class), else convert like ``bt2408``."""
        if is_poison(frames).any():
            if not self.marker:
                os._exit(3)
            try:
                Path(self.marker).open("x").close()
            except FileExistsError:
                pass
            else:
                os._exit(3)
        return super().apply(frames, colour)
