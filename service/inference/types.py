"""Value types shared by the batcher, the worker pool and their callers (streams, jobs, images)."""

import asyncio
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.operators import Operator, create_operator

OutputFormat = Literal["nits", "rgb10a2", "rgb48"]
"""What a worker hands back per frame.

``nits``: H x W x 3 float32 linear BT.2020 cd/m² (the operator output, for the video encoder);
``rgb10a2``: H x W uint32 packed PQ (see docs/PROTOCOL.md); ``rgb48``: H x W x 3 uint16 PQ.
"""


@dataclass(frozen=True)
class OperatorSpec:
    """A hashable recipe for an operator, so each worker thread can build and cache its own instance."""

    name: str
    params: tuple[tuple[str, float | str], ...] = ()

    @classmethod
    def of(cls, name: str, **params: float | str) -> "OperatorSpec":
        """Build a spec with its parameters in a canonical (sorted) order.

        Raises
        ------
        ValueError
            If the operator is unknown or a parameter is out of range (checked by building it once).
        """
        spec = cls(name, tuple(sorted(params.items())))
        _validate(spec)
        return spec

    def create(self) -> Operator:
        """A fresh operator instance (one per worker thread: interpreters are never shared).

        Raises
        ------
        ValueError
            If the name or parameters are invalid.
        """
        return create_operator(self.name, **dict(self.params))

    @property
    def mode(self) -> str:
        """The ``mode`` parameter, or ``""`` for operators without one (metrics label)."""
        return str(dict(self.params).get("mode", ""))


@cache
def _validate(spec: OperatorSpec) -> None:
    """Build ``spec`` once to check it (cached: building a learned operator loads a model)."""
    spec.create()


@dataclass(frozen=True)
class BatchKey:
    """Frames batch together only when all of these match: same operator, frame size, colour, output."""

    operator: OperatorSpec
    height: int
    width: int
    colour: ColourDescription
    output: OutputFormat


@dataclass(frozen=True)
class BatcherConfig:
    """Batching and pool sizing, taken from :class:`service.config.Settings`."""

    max_batch_size: int = 4
    max_queue_delay_s: float = 0.004
    queue_size: int = 64
    workers: int = 1


@dataclass(frozen=True)
class FrameResult:
    """One converted frame and when things happened to it (``time.perf_counter()`` seconds)."""

    data: npt.NDArray[np.generic]
    enqueued: float
    infer_start: float
    infer_end: float
    batch_size: int


@dataclass(eq=False)
class FrameRequest:
    """One frame waiting for a batch; its caller awaits ``future`` (TGI's ``Entry``)."""

    frame: npt.NDArray[np.uint8]
    key: BatchKey
    future: "asyncio.Future[FrameResult]"
    enqueued: float = field(default=0.0)


def resolve_spec(name: str, peak_nits: float, mode: str | None = None) -> OperatorSpec:
    """The spec for operator ``name`` at ``peak_nits``, with ``mode`` if the operator takes one.

    Raises
    ------
    InputError
        If the operator is unknown or a parameter is invalid.
    """
    from service.errors import InputError
    from service.operators import available_operators

    infos = {info.name: info for info in available_operators()}
    if name not in infos:
        raise InputError(f"operator '{name}' is not known; expected one of {sorted(infos)}")
    takes = {param.name for param in infos[name].params}
    params: dict[str, float | str] = {}
    if "peak_nits" in takes:
        params["peak_nits"] = float(peak_nits)
    if mode is not None and "mode" in takes:
        params["mode"] = str(mode)  # a Mode member or a plain name: specs hold plain strings
    try:
        return OperatorSpec.of(name, **params)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
