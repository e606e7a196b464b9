"""A test-only operator with modes, like ``mqn`` but without a model: ``bt2408`` whatever the mode.

Registered in the server under test through ``ITM_EXTRA_OPERATORS``, so the job tests can check how a mode
is resolved without depending on the learned model's artifacts.
"""

from typing import ClassVar

from service.colour.scaling import DEFAULT_PEAK_NITS
from service.operators.base import OperatorInfo, ParamSpec
from service.operators.classical import BT2408, PEAK_PARAM

PATH = "tests.service.jobs.moded_operator:ModedOperator"
NAME = "moded"


class ModedOperator(BT2408):
    """BT.2408 that takes (and ignores) a ``mode`` parameter."""

    info: ClassVar[OperatorInfo] = OperatorInfo(
        NAME,
        "test only: bt2408 with fast/quality modes",
        (PEAK_PARAM, ParamSpec("mode", "fast", "speed or quality", choices=("fast", "quality"))),
    )

    def __init__(self, peak_nits: float = DEFAULT_PEAK_NITS, mode: str = "fast") -> None:
        super().__init__(peak_nits)
        self.mode = mode

    @property
    def params(self) -> dict[str, float | str]:
        """Peak and mode."""
        return {"peak_nits": self.peak_nits, "mode": self.mode}
