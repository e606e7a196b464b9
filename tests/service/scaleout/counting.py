"""A test-only operator that writes down every build of itself: one line per instance, the building pid.

Ray workers load it through the plug-in registry, as :mod:`.faults`; every node of the test cluster runs on
this machine, so the ledger file the test names is where each worker process's build lands. Production
code keeps no counter: the ledger shows a test that a worker built the operator once for all its segments.
"""

import os
from pathlib import Path

from service.operators.base import OperatorInfo, ParamSpec
from service.operators.classical import BT2408, PEAK_PARAM

PATH = "tests.service.scaleout.counting:CountingOperator"


class CountingOperator(BT2408):
    """BT.2408 that appends its process id to ``ledger`` when it is built."""

    info = OperatorInfo(
        "counting",
        "test only: bt2408 that writes its process id to a ledger file when built",
        (PEAK_PARAM, ParamSpec("ledger", "", "file each build appends its process id to")),
    )

    def __init__(self, peak_nits: float = 1000.0, ledger: str = "") -> None:
        super().__init__(peak_nits)
        self.ledger = ledger
        with Path(ledger).open("a") as out:
            out.write(f"{os.getpid()}\n")

    @property
    def params(self) -> dict[str, float | str]:
        """Peak and ledger."""
        return {**super().params, "ledger": self.ledger}


def builds(ledger: Path) -> list[int]:
    """The process ids that built the operator, one per build, in order."""
    return [int(line) for line in ledger.read_text().split()]
