"""The learned operator ``singlehdr``: SingleHDR (Liu et al., CVPR 2020) on LiteRT, ``fast`` and ``quality``.

The network reverses the camera pipeline in four stages (dequantization, linearization by a predicted
inverse response, hallucination where the over-exposure mask is on, refinement; ``models/singlehdr``). It is
fully convolutional with a global descriptor for the response curve, so it runs at any size: ``quality``
runs it on the frame itself (sides rounded to multiples of the U-Nets' stride), ``fast`` on the frame
downscaled to a 512 px long side (Pillow-exact bilinear, as MQN's fast mode).

Its output is a logit of PQ(1000 cd/m²)'s range per pixel and channel. The operator subtracts the logit of
the network input's own BT.2408 placement, upsamples that offset bilinearly to the frame (when the network
ran smaller) and adds it to the full-resolution frame's placement: the output stage of ``expandnet``
(:func:`service.operators.expandnet.offsets_to_nits`). So edges and texture come from the frame at full
resolution, the expansion from the network, and the same network output decodes to the same light at the
network's own size.

Artefacts are read from ``ITM_SINGLEHDR_DIR`` if set (tests), else from ``models/artifacts``. Without an
exported model the operator is still listed, and creating it fails with an
:class:`~service.errors.EngineError` that says how to make it.
"""

import os
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numba
import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.scaling import DEFAULT_PEAK_NITS
from service.inference.engine import ARTIFACTS_DIR, LiteRTModel
from service.operators.base import Frames, Mode, Nits, Operator, OperatorInfo, ParamSpec
from service.operators.classical import PEAK_PARAM
from service.operators.expandnet import OutputSpec, offsets_to_nits, read_meta
from service.operators.mqn import processing_size
from service.operators.resample import resize_bilinear
from service.timing import StageClock

DIR_ENV = "ITM_SINGLEHDR_DIR"
"""Environment variable naming another artefact directory (tests, staged models)."""
META_FILE = "singlehdr.json"
FEATURES_FILE = "singlehdr_deq_int8.tflite"
HEAD_FILE = "singlehdr_head_dr.tflite"
FRAME_INPUT = "frame"
RESIDUAL_INPUT = "residual"
"""Input names, by their Keras names (``models/singlehdr/model.py``)."""
MODES = tuple(mode.value for mode in Mode)
FAST_LONG_SIDE = 512
"""Long side (px) of the network's input in ``fast`` mode when the model's metadata names none."""

F32 = npt.NDArray[np.float32]


def artifacts_dir() -> Path:
    """Where the model is read from: ``ITM_SINGLEHDR_DIR``, else the shipped artefacts."""
    return Path(os.environ.get(DIR_ENV) or ARTIFACTS_DIR)


class Predictor(Protocol):
    """What the operator needs from a runtime (LiteRT here; the float Keras twin in evaluation)."""

    @property
    def meta(self) -> dict[str, Any]:
        """Artefact metadata (``stride``, ``peak_nits`` ...)."""
        ...

    def run(self, frames: Frames, clock: StageClock) -> F32:
        """N x h x w x 3 uint8 frames (sides multiples of ``stride``) -> N x h x w x 3 logits."""
        ...


class SingleHDREngine:
    """The exported SingleHDR: int8 dequantization U-Net + float-activation rest, each a :class:`LiteRTModel`.

    Raises
    ------
    EngineError
        If the model has not been exported to ``directory``.
    """

    def __init__(self, directory: Path, num_threads: int = 2) -> None:
        self.meta = read_meta(directory / META_FILE, "singlehdr", DIR_ENV)
        self.features = LiteRTModel(directory / self.meta["features"], num_threads)
        self.head = LiteRTModel(directory / self.meta["head"], num_threads)

    def run(self, frames: Frames, clock: StageClock) -> F32:
        """Logits, charging ``backbone`` (int8 dequantization) and ``head`` (float stages) to ``clock``."""
        (residual,) = self.features.run({FRAME_INPUT: frames})
        clock.lap("backbone")
        unit = frames.astype(np.float32) * np.float32(1.0 / 255.0)
        (logit,) = self.head.run({FRAME_INPUT: unit, RESIDUAL_INPUT: np.asarray(residual, np.float32)})
        clock.lap("head")
        return np.asarray(logit, np.float32)


@cache
def _engine(directory: Path, threads: int) -> SingleHDREngine:
    """One engine per model directory per process (it hands each thread its own interpreters)."""
    return SingleHDREngine(directory, num_threads=threads)


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


class SingleHDR(Operator):
    """Learned ITM: SingleHDR (dequantization, linearization, hallucination, refinement), trained here.

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    info = OperatorInfo(
        "singlehdr",
        "SingleHDR (learned; reverses the camera pipeline: dequantization, inverse response curve, "
        "hallucination where over-exposed, refinement; run on a 512 px view (fast) or at native resolution "
        "(quality), its expansion applied to every full-resolution pixel on the BT.2408 placement)",
        (
            PEAK_PARAM,
            ParamSpec(
                "mode",
                "fast",
                "fast (network on a 512 px long side) or quality (network at native resolution)",
                choices=MODES,
            ),
        ),
    )

    def __init__(
        self, peak_nits: float = DEFAULT_PEAK_NITS, mode: str = "fast", engine: Predictor | None = None
    ) -> None:
        super().__init__(peak_nits)
        if mode not in MODES:
            raise ValueError(f"mode '{mode}' is not known; expected one of {MODES}")
        self.mode = mode
        # ``engine`` lets evaluation plug in the float Keras model; the service always uses LiteRT.
        self.engine: Predictor = (
            engine if engine is not None else _engine(artifacts_dir(), numba.get_num_threads())
        )
        meta = self.engine.meta
        self.stride = int(meta.get("stride", 8))
        self.fast_long_side = int(meta.get("fast_long_side", FAST_LONG_SIDE))
        model_peak = float(meta.get("peak_nits", DEFAULT_PEAK_NITS))
        # Trained for a 1000 cd/m² peak: a lower peak clips, a higher one is not used.
        self.spec = OutputSpec(model_peak, min(self.peak_nits, model_peak))

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
        """Run the network at its size, take its offset from the BT.2408 placement there, apply it here."""
        h, w = frames.shape[1:3]
        ph, pw = self.network_size(h, w)
        small = frames if (ph, pw) == (h, w) else resize_bilinear(frames, ph, pw)
        self.clock.lap("preprocess")
        logits = self.engine.run(small, self.clock)
        offsets = logits - self.spec.anchor_logits(colour)[small]
        if (ph, pw) != (h, w):
            offsets = upsample_bilinear(offsets, h, w)
        return offsets_to_nits(frames, colour, offsets, self.spec)
