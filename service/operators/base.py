"""The operator interface every ITM method implements, learned or not.

An operator takes a batch of SDR frames (N x H x W x 3 uint8 RGB, non-linear, with their colour description)
and returns HDR *display light*: N x H x W x 3 float32, linear, BT.2020 primaries, cd/m² (see
:mod:`service.colour.scaling` for the convention). Two rules every implementation keeps:

* each frame's output depends on that frame only (no batch statistics), so batching never changes results;
* no per-frame min-max normalisation: output is absolute, so a static scene stays static.

The encoder, the image writer and the stream packer all start from this output.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.scaling import DEFAULT_PEAK_NITS
from service.timing import StageClock

Frames = npt.NDArray[np.uint8]
Nits = npt.NDArray[np.float32]


class Mode(StrEnum):
    """The speed/quality trade-off of operators that offer one (their ``mode`` parameter, e.g. ``mqn``)."""

    FAST = "fast"
    QUALITY = "quality"


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter of an operator, for the CLI, the API schema and ``itmstream operators``."""

    name: str
    default: float | str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OperatorInfo:
    """What an operator is and which parameters it takes."""

    name: str
    summary: str
    params: tuple[ParamSpec, ...] = field(default_factory=tuple)


class Operator(ABC):
    """Base class of every ITM operator; subclasses set ``info`` and implement :meth:`apply`."""

    info: ClassVar[OperatorInfo]

    def __init__(self, peak_nits: float = DEFAULT_PEAK_NITS) -> None:
        if not 100.0 <= peak_nits <= 10000.0:
            raise ValueError(f"peak {peak_nits} cd/m² is out of range; expected 100 to 10000")
        self.peak_nits = float(peak_nits)
        self.clock = StageClock()
        """Stage laps of the latest call; :meth:`apply` may charge its parts (``preprocess``, ``backbone``,
        ``head``) and whatever it leaves unclaimed is ``postprocess`` (the colour math). Instances are
        per worker thread, so the clock is never shared."""

    @property
    def name(self) -> str:
        """Registry name, e.g. ``bt2446a``."""
        return self.info.name

    @property
    def params(self) -> dict[str, float | str]:
        """The parameters this instance runs with (echoed in job results and stream hellos)."""
        return {"peak_nits": self.peak_nits}

    def __call__(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Convert a batch; validates the layout so every operator rejects bad input the same way.

        Raises
        ------
        ValueError
            If ``frames`` is not N x H x W x 3 uint8.
        """
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected N x H x W x 3 uint8 frames, got {frames.dtype} {frames.shape}")
        self.clock = StageClock()
        out = self.apply(np.ascontiguousarray(frames), colour)
        self.clock.lap("postprocess")
        return out

    @abstractmethod
    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Map validated frames to linear BT.2020 cd/m² (N x H x W x 3 float32)."""

    def warm_up(self, height: int, width: int) -> None:
        """Compile kernels or load interpreters for a frame size before the first real frame arrives."""
        self(np.zeros((1, height, width, 3), np.uint8), ColourDescription.video())
