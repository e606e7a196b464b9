"""What the learned operators ``expandnet``, ``singlehdr`` and ``region_lstm`` share, defined once.

All three are exported the same way (an int8 part, ``features``, and a float-activation ``head``, each a
``.tflite`` file, with a JSON of metadata beside them), are read from a directory an environment variable
may name, and end in the same output stage: per pixel and channel a logit offset from the BT.2408
placement, turned into light by :func:`offsets_to_nits` (a zero offset is exactly ``bt2408``). Two of them
(:class:`ModedLearnedOperator`) run their network on a smaller view in ``fast`` mode and upsample its
offsets to the frame.

What differs (the engines' inputs, how an operator gets its offsets) stays in each operator's module.
"""

import json
from abc import abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import numba
import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS
from service.errors import EngineError
from service.inference.engine import LiteRTModel, artifacts_dir
from service.operators.base import Frames, Mode, Nits, Operator, ParamSpec
from service.operators.mqn import processing_size
from service.operators.resample import resize_bilinear

LOGIT_EPS = 1e-4
"""The anchor is clipped to [eps, 1 - eps] of the PQ range before its logit, as in training."""
Z_RANGE = 16.0
Z_STEPS = 8192
"""The output stage is one table over the logit z in [-16, 16] (linear interpolation between 8193 samples):
cd/m² = min(PQ⁻¹(PQ(peak) * sigmoid(z)), peak). No exp per pixel; within 0.05 of a 10-bit PQ code of the
exact maths. Beyond ±16 the sigmoid is within 1e-7 of 0 or 1."""
MODES = tuple(mode.value for mode in Mode)
FAST_LONG_SIDE = 512
"""Long side (px) of the network's input in ``fast`` mode when the model's metadata names none."""
MODE_PARAM = ParamSpec(
    "mode",
    "fast",
    "fast (network on a 512 px long side) or quality (network at native resolution)",
    choices=MODES,
)

F32 = npt.NDArray[np.float32]


def read_meta(path: Path, name: str, dir_env: str) -> dict[str, Any]:
    """The export metadata of learned operator ``name`` at ``path``.

    Raises
    ------
    EngineError
        If the model has not been exported there; the message says how to make it.
    """
    if not path.exists():
        raise EngineError(
            f"{name} is not available: {path} is missing; train it (python -m models.train --model {name}) "
            f"and export it (python -m models.export --model {name}), or point {dir_env} at an exported model"
        )
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


class Runtime(Protocol):
    """What every learned operator reads from its runtime (LiteRT, or the float Keras twin in evaluation)."""

    @property
    def meta(self) -> dict[str, Any]:
        """Artefact metadata (``peak_nits`` and the operator's own keys)."""
        ...


class LearnedEngine:
    """An exported model: its int8 part and its float head, each a :class:`LiteRTModel`, and its metadata.

    Subclasses name the model and add ``run``, which feeds the two parts their own inputs.

    Raises
    ------
    EngineError
        If the model has not been exported to ``directory``.
    """

    name: ClassVar[str]
    """Operator name, as in the error that says how to make the model."""
    meta_file: ClassVar[str]
    dir_env: ClassVar[str]
    """Environment variable naming another artefact directory (tests, staged models)."""

    def __init__(self, directory: Path, num_threads: int = 2) -> None:
        self.meta = read_meta(directory / self.meta_file, self.name, self.dir_env)
        self.features = LiteRTModel(directory / self.meta["features"], num_threads)
        self.head = LiteRTModel(directory / self.meta["head"], num_threads)


_ENGINES: dict[tuple[type[LearnedEngine], Path, int], LearnedEngine] = {}


def shared_engine(engine_type: type[LearnedEngine], directory: Path, threads: int) -> LearnedEngine:
    """One engine per model and directory per process (it hands each thread its own interpreters).

    A dict rather than ``functools.cache``, whose typing takes no class as a key. Two threads that miss at
    once both build one; the first stored is kept.
    """
    key = (engine_type, directory, threads)
    if key not in _ENGINES:
        _ENGINES.setdefault(key, engine_type(directory, threads))
    return _ENGINES[key]


@dataclass(frozen=True)
class OutputSpec:
    """The output stage: the sigmoid's range (PQ of the model's peak) and the operator's peak."""

    model_peak_nits: float
    peak_nits: float

    @cached_property
    def pq_peak(self) -> float:
        """PQ code at which the sigmoid saturates."""
        return float(eotf_inverse_st2084(self.model_peak_nits))

    @cached_property
    def light_table(self) -> F32:
        """cd/m² at ``Z_STEPS`` + 1 logits evenly spaced over ±``Z_RANGE``, clipped at the peak."""
        z = np.linspace(-Z_RANGE, Z_RANGE, Z_STEPS + 1, dtype=np.float64)
        pq = self.pq_peak / (1.0 + np.exp(-z))
        return np.minimum(np.asarray(eotf_st2084(pq), np.float64), self.peak_nits).astype(np.float32)

    def anchor_logits(self, colour: ColourDescription) -> F32:
        """Logit of each code value's BT.2408 placement, as a fraction of the sigmoid's PQ range."""
        p = np.asarray(eotf_inverse_st2084(colour.linear_lut(SDR_WHITE_NITS)), np.float64) / self.pq_peak
        p = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
        return (np.log(p) - np.log1p(-p)).astype(np.float32)


def anchored_sigmoid(base_pq: npt.ArrayLike, offset: npt.ArrayLike, pq_peak: float) -> F32:
    """PQ = ``pq_peak`` * sigmoid(logit(base / ``pq_peak``) + offset), NumPy float64 (the reference).

    Twin of ``models.expandnet.model.AnchoredSigmoid``, which the networks were trained through.
    """
    p = np.clip(np.asarray(base_pq, np.float64) / pq_peak, LOGIT_EPS, 1.0 - LOGIT_EPS)
    z = np.log(p) - np.log1p(-p) + np.asarray(offset, np.float64)
    return np.asarray(pq_peak / (1.0 + np.exp(-z)), np.float32)


@numba.njit(inline="always", fastmath=True)
def _light(logit: float, offset: float, table: F32) -> float:
    """cd/m² of one channel: the anchored sigmoid of ``logit + offset``, read from the light table."""
    steps = table.shape[0] - 1
    s = (logit + offset + Z_RANGE) * (steps / (2.0 * Z_RANGE))
    s = min(max(s, 0.0), float(steps))
    k = min(int(s), steps - 1)
    return table[k] + (s - k) * (table[k + 1] - table[k])  # type: ignore[no-any-return]


@numba.njit(parallel=True, fastmath=True, cache=True)
def _offsets_to_nits(frames, logits, offsets, table, matrix, out):  # type: ignore[no-untyped-def]
    n, h, w, _ = frames.shape
    for row in numba.prange(n * h):
        i, y = row // h, row % h
        for x in range(w):
            r = _light(logits[frames[i, y, x, 0]], offsets[i, y, x, 0], table)
            g = _light(logits[frames[i, y, x, 1]], offsets[i, y, x, 1], table)
            b = _light(logits[frames[i, y, x, 2]], offsets[i, y, x, 2], table)
            for c in range(3):
                out[i, y, x, c] = matrix[c, 0] * r + matrix[c, 1] * g + matrix[c, 2] * b


def offsets_to_nits(frames: Frames, colour: ColourDescription, offsets: F32, spec: OutputSpec) -> Nits:
    """Network offsets -> linear BT.2020 cd/m², one fused pass (anchored sigmoid, PQ decode, peak, primaries).

    Parameters
    ----------
    frames : numpy.ndarray
        N x H x W x 3 uint8 SDR code values (the anchors).
    offsets : numpy.ndarray
        N x H x W x 3 float32 logit offsets from the network.

    Returns
    -------
    numpy.ndarray
        N x H x W x 3 float32 cd/m², BT.2020, at most ``spec.peak_nits``.
    """
    out = np.empty(frames.shape, np.float32)
    matrix = colour.to_bt2020_matrix().astype(np.float32)
    # The rows of an RGB -> BT.2020 matrix are convex weights, so clipping before it keeps every channel
    # under the peak.
    _offsets_to_nits(
        frames,
        spec.anchor_logits(colour),
        np.ascontiguousarray(offsets, np.float32),
        spec.light_table,
        matrix,
        out,
    )
    return out


def _linear_taps(n_in: int, n_out: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], F32]:
    """Bilinear taps, half-pixel centres, edges clamped: first index, second index, weight of the second."""
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _upsample(src, y0, y1, fy, x0, x1, fx, out):  # type: ignore[no-untyped-def]
    n, oh, ow, c = out.shape
    for row in numba.prange(n * oh):
        i, y = row // oh, row % oh
        a, b, t = y0[y], y1[y], fy[y]
        for x in range(ow):
            p, q, s = x0[x], x1[x], fx[x]
            for k in range(c):
                top = src[i, a, p, k] + s * (src[i, a, q, k] - src[i, a, p, k])
                bot = src[i, b, p, k] + s * (src[i, b, q, k] - src[i, b, p, k])
                out[i, y, x, k] = top + t * (bot - top)


def upsample_bilinear(values: F32, height: int, width: int) -> F32:
    """N x h x w x C float32 -> N x ``height`` x ``width`` x C, bilinear with half-pixel centres.

    What ``tf.image.resize(..., "bilinear")`` computes, for the network's offsets (smooth fields, so no
    antialiasing is needed on the way up).
    """
    y0, y1, fy = _linear_taps(values.shape[1], height)
    x0, x1, fx = _linear_taps(values.shape[2], width)
    out = np.empty((values.shape[0], height, width, values.shape[3]), np.float32)
    _upsample(np.ascontiguousarray(values, np.float32), y0, y1, fy, x0, x1, fx, out)
    return out


class LearnedOperator[P: Runtime](Operator):
    """A learned operator on its exported model (``P``: what it runs) and the shared output stage.

    Raises
    ------
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    engine_type: ClassVar[type[LearnedEngine]]
    """The LiteRT engine the service runs; its instances are the operator's ``P``."""

    def __init__(self, peak_nits: float = DEFAULT_PEAK_NITS, engine: P | None = None) -> None:
        super().__init__(peak_nits)
        self.check_params()
        # ``engine`` lets evaluation plug in the float Keras model; the service always uses LiteRT.
        self.engine: P = (
            engine
            if engine is not None
            else cast(P, self.load_engine(numba.get_num_threads()))  # engine_type's instances are P
        )
        model_peak = float(self.engine.meta.get("peak_nits", DEFAULT_PEAK_NITS))
        # Trained for a 1000 cd/m² peak: a lower peak clips, a higher one is not used.
        self.spec = OutputSpec(model_peak, min(self.peak_nits, model_peak))

    def check_params(self) -> None:
        """Refuse the operator's own parameters, after the peak and before the model is read; none here."""

    @classmethod
    def load_engine(cls, threads: int) -> LearnedEngine:
        """The process's engine on the model in the operator's artefact directory."""
        return shared_engine(cls.engine_type, artifacts_dir(cls.engine_type.dir_env), threads)


class ModedLearnedOperator[P: Runtime](LearnedOperator[P]):
    """A learned operator that runs its network on a 512 px view (``fast``) or at native size (``quality``).

    Its network gives offsets at its own size; they are upsampled bilinearly to the frame (when the network
    ran smaller) and applied to every full-resolution pixel's BT.2408 placement, so edges and texture come
    from the frame, the expansion from the network. Subclasses say how they get the offsets.

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    default_stride: ClassVar[int]
    """What the network's sides must be multiples of, when the model's metadata names no ``stride``."""

    def __init__(
        self, peak_nits: float = DEFAULT_PEAK_NITS, mode: str = "fast", engine: P | None = None
    ) -> None:
        self.mode = mode
        super().__init__(peak_nits, engine)
        meta = self.engine.meta
        self.stride = int(meta.get("stride", self.default_stride))
        self.fast_long_side = int(meta.get("fast_long_side", FAST_LONG_SIDE))

    def check_params(self) -> None:
        """Refuse an unknown mode before the model is read: a wrong mode is a ``ValueError``, model or not.

        Raises
        ------
        ValueError
            For an unknown ``mode``.
        """
        if self.mode not in MODES:
            raise ValueError(f"mode '{self.mode}' is not known; expected one of {MODES}")

    @property
    def params(self) -> dict[str, float | str]:
        """Peak and mode as run."""
        return {"peak_nits": self.peak_nits, "mode": self.mode}

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the network runs at for a frame: sides multiples of the stride, at most the frame's."""
        long_side = max(height, width)
        if self.mode == Mode.FAST.value:
            long_side = min(long_side, self.fast_long_side)
        return processing_size(height, width, long_side, self.stride)

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Run the network at its size and apply its offsets to every pixel's BT.2408 placement."""
        h, w = frames.shape[1:3]
        ph, pw = self.network_size(h, w)
        small = frames if (ph, pw) == (h, w) else resize_bilinear(frames, ph, pw)
        offsets = self.offsets(small, colour)
        if (ph, pw) != (h, w):
            offsets = upsample_bilinear(offsets, h, w)
        return offsets_to_nits(frames, colour, offsets, self.spec)

    @abstractmethod
    def offsets(self, small: Frames, colour: ColourDescription) -> F32:
        """Logit offsets from the BT.2408 placement of ``small`` (the network's input), N x h x w x 3.

        Charges ``preprocess`` (whatever it prepares), ``backbone`` and ``head`` to the clock.
        """
