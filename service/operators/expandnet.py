"""The learned operator ``expandnet``: ExpandNet (Marnerides et al., Eurographics 2018) on LiteRT.

Every pixel of the frame goes through the network at native resolution: ExpandNet has no upsampling, so it
has no cheaper low-resolution mode (its cost grows with the frame; see the model card). The int8 feature
extractor reads the frame and a 256 x 256 view of it (Pillow-exact bilinear, :func:`resize_bilinear`, the
same pixels training saw); the float head gives three logit offsets per pixel; and one fused pass here turns
them into light: PQ = PQ(1000 cd/m²) * sigmoid(logit(BT.2408 placement) + offset), decoded to cd/m² and
converted to BT.2020 (:func:`offsets_to_nits`). A zero offset is exactly ``bt2408``; nothing depends on the
frame's own statistics except through the network's global branch.

The artefacts are read from ``ITM_EXPANDNET_DIR`` if set (tests point it at a freshly exported smoke model),
else from the shipped ``models/artifacts``. Until the model is trained and exported the operator is still
listed, and creating it fails with an :class:`~service.errors.EngineError` that says how to make it.
"""

import json
import os
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Protocol

import numba
import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS
from service.errors import EngineError
from service.inference.engine import ARTIFACTS_DIR, LiteRTModel
from service.operators.base import Frames, Nits, Operator, OperatorInfo
from service.operators.classical import PEAK_PARAM
from service.operators.resample import resize_bilinear
from service.timing import StageClock

DIR_ENV = "ITM_EXPANDNET_DIR"
"""Environment variable naming another artefact directory (tests, staged models)."""
META_FILE = "expandnet.json"
FEATURES_FILE = "expandnet_features_int8.tflite"
HEAD_FILE = "expandnet_head_dr.tflite"
FRAME_INPUT = "frame"
GLOBAL_INPUT = "global_view"
"""The feature extractor's inputs, by their Keras names (``models/expandnet/model.py``)."""
LOGIT_EPS = 1e-4
"""The anchor is clipped to [eps, 1 - eps] of the PQ range before its logit, as in training."""
Z_RANGE = 16.0
Z_STEPS = 8192
"""The output stage is one table over the logit z in [-16, 16] (linear interpolation between 8193 samples):
cd/m² = min(PQ⁻¹(PQ(peak) * sigmoid(z)), peak). No exp per pixel; within 0.05 of a 10-bit PQ code of the
exact maths. Beyond ±16 the sigmoid is within 1e-7 of 0 or 1."""

F32 = npt.NDArray[np.float32]


def artifacts_dir() -> Path:
    """Where the model is read from: ``ITM_EXPANDNET_DIR``, else the shipped artefacts."""
    return Path(os.environ.get(DIR_ENV) or ARTIFACTS_DIR)


class Predictor(Protocol):
    """What the operator needs from a runtime (LiteRT here; the float Keras twin in evaluation)."""

    @property
    def meta(self) -> dict[str, Any]:
        """Artefact metadata (``global_size``, ``peak_nits`` ...)."""
        ...

    def run(self, frames: Frames, view: Frames, clock: StageClock) -> F32:
        """N x H x W x 3 uint8 frames and their N x g x g x 3 views -> N x H x W x 3 logit offsets."""
        ...


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


class ExpandNetEngine:
    """The exported ExpandNet: int8 feature extractor + dynamic-range head, each a :class:`LiteRTModel`.

    Raises
    ------
    EngineError
        If the model has not been exported to ``directory``.
    """

    def __init__(self, directory: Path, num_threads: int = 2) -> None:
        self.meta = read_meta(directory / META_FILE, "expandnet", DIR_ENV)
        self.features = LiteRTModel(directory / self.meta["features"], num_threads)
        self.head = LiteRTModel(directory / self.meta["head"], num_threads)

    def run(self, frames: Frames, view: Frames, clock: StageClock) -> F32:
        """Logit offsets, charging ``backbone`` (int8 part) and ``head`` (float part) to ``clock``."""
        (features,) = self.features.run({FRAME_INPUT: frames, GLOBAL_INPUT: view})
        clock.lap("backbone")
        (offsets,) = self.head.run({"features": features})
        clock.lap("head")
        return np.asarray(offsets, np.float32)


@cache
def _engine(directory: Path, threads: int) -> ExpandNetEngine:
    """One engine per model directory per process (it hands each thread its own interpreters)."""
    return ExpandNetEngine(directory, num_threads=threads)


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

    Twin of ``models.expandnet.model.AnchoredSigmoid``, which the network was trained through.
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


class ExpandNet(Operator):
    """Learned ITM: ExpandNet (local, dilated and global CNN branches at native resolution), trained here.

    Raises
    ------
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    info = OperatorInfo(
        "expandnet",
        "ExpandNet (learned; local, dilated and global CNN branches over every pixel at native resolution, "
        "no fast mode; PQ anchored on the BT.2408 placement)",
        (PEAK_PARAM,),
    )

    def __init__(self, peak_nits: float = DEFAULT_PEAK_NITS, engine: Predictor | None = None) -> None:
        super().__init__(peak_nits)
        # ``engine`` lets evaluation plug in the float Keras model; the service always uses LiteRT.
        self.engine: Predictor = (
            engine if engine is not None else _engine(artifacts_dir(), numba.get_num_threads())
        )
        meta = self.engine.meta
        self.global_size = int(meta["global_size"])
        model_peak = float(meta.get("peak_nits", DEFAULT_PEAK_NITS))
        # Trained for a 1000 cd/m² peak: a lower peak clips, a higher one is not used.
        self.spec = OutputSpec(model_peak, min(self.peak_nits, model_peak))

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Run the network over the whole frame and anchor its output on the frame's BT.2408 placement."""
        view = resize_bilinear(frames, self.global_size, self.global_size)
        self.clock.lap("preprocess")
        offsets = self.engine.run(frames, view, self.clock)
        return offsets_to_nits(frames, colour, offsets, self.spec)
