"""The learned operator ``region_lstm``: local region maps on a ConvLSTM (Oh, Shin and Hong, CMC 2022).

The frame is split, per channel, into five region maps by its cumulative histogram (20 % of the pixels each;
:func:`region_bounds`, :func:`region_maps`). SParam-Net (int8) reads a 256² view of the frame and its region
maps and predicts the parameters of an inverse Reinhard S-curve; the float head makes the pseudo-HDR image
with it, runs a two-layer ConvLSTM over the region maps, brightest first, each step joined with the pseudo-HDR
image, at a quarter of the network's resolution, and an FSRCNN-style decoder whose deconvolution brings its
correction back to full resolution (``models/region_lstm``). The head's output is a logit offset from the
BT.2408 placement per pixel and channel, so the output stage is the one every learned operator here shares
(:func:`service.operators.learned.offsets_to_nits`): a zero offset is ``bt2408``.

The curve is anchored: mid-grey (18 % of SDR white) keeps its BT.2408 placement whatever the parameters, and
the network predicts only how far white is expanded, bounded to [1, 1000 / 203] times SDR white. The region
maps are per-frame statistics, but they partition the frame's own code values (they sum to the frame), so
they decompose the input and scale nothing: the output stays on the absolute convention.

Modes: ``quality`` runs the network on the frame itself (sides rounded to multiples of its stride, 4), the
ConvLSTM at a quarter of each side; ``fast`` on the frame downscaled to a 512 px long side, its offsets
upsampled bilinearly and applied to every full-resolution pixel (``singlehdr``'s fast mode: both are a
:class:`~service.operators.learned.ModedLearnedOperator`).

Artefacts are read from ``ITM_REGION_LSTM_DIR`` if set (tests), else from ``models/artifacts``. Without an
exported model the operator is still listed, and creating it fails with an
:class:`~service.errors.EngineError` that says how to make it.
"""

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084
from service.colour.scaling import SDR_WHITE_NITS
from service.inference import engine as inference
from service.operators.base import Frames, OperatorInfo
from service.operators.classical import PEAK_PARAM
from service.operators.learned import MODE_PARAM, LearnedEngine, ModedLearnedOperator, Runtime
from service.operators.resample import resize_bilinear
from service.timing import StageClock

DIR_ENV = "ITM_REGION_LSTM_DIR"
"""Environment variable naming another artefact directory (tests, staged models)."""
META_FILE = "region_lstm.json"
FEATURES_FILE = "region_lstm_sparam_int8.tflite"
HEAD_FILE = "region_lstm_head_dr.tflite"
SPARAM_INPUT = "sparam_view"
FRAME_INPUT = "frame"
ANCHOR_INPUT = "anchor"
BOUNDS_INPUT = "bounds"
CURVE_INPUT = "curve"
"""Input names, by their Keras names (``models/region_lstm/model.py``)."""
REGIONS = 5
"""N, the number of region maps: the paper's best (its Table 2)."""
CODES = 256
SPARAM_SIZE = 256
"""Side of SParam-Net's square view when the model's metadata names none (the paper's 256²)."""

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def artifacts_dir() -> Path:
    """Where the model is read from: ``ITM_REGION_LSTM_DIR``, else the shipped artefacts."""
    return inference.artifacts_dir(DIR_ENV)


def region_bounds(frames: Frames, regions: int = REGIONS) -> I64:
    """Per frame and channel, the last code value of each region but the brightest (cumulative histogram).

    Code v is in region n (1..N) when n = ceil(N * CDF(v)), CDF(v) the share of the frame's pixels of that
    channel at or below v (the paper's Eq. 1): each region holds 20 % of the pixels, or more when one code
    value alone holds more (all pixels of one code share a region). Bound k is the largest code whose CDF is
    at most k / N (-1 when there is none: region k is then empty).

    Parameters
    ----------
    frames : numpy.ndarray
        N x H x W x 3 uint8 SDR code values.

    Returns
    -------
    numpy.ndarray
        N x (regions - 1) x 3 int64 code values in [-1, 255], non-decreasing along axis 1.
    """
    n, _, _, c = frames.shape
    out = np.empty((n, regions - 1, c), np.int64)
    levels = np.arange(1, regions) / regions
    for i in range(n):
        for ch in range(c):
            counts = np.bincount(frames[i, ..., ch].ravel(), minlength=CODES)
            cdf = np.cumsum(counts) / counts.sum()
            out[i, :, ch] = np.searchsorted(cdf, levels, side="right") - 1
    return out


def bounds_tensor(bounds: I64) -> F32:
    """Bounds as the head reads them: N x 1 x 1 x (regions - 1) * 3, half a code above each bound, in [0, 1].

    Bound k of channel c is at position 3k + c. Half a code up, so that a code value is above or below it by
    at least half a code and the head's steep ramp (``models.region_lstm.layers.RegionMaps``) is exactly 0
    or 1.
    """
    n = len(bounds)
    return ((bounds.astype(np.float32) + 0.5) / 255.0).reshape(n, 1, 1, -1)


def region_maps(frames: Frames, bounds: I64) -> Frames:
    """The region maps of ``frames``: each pixel's code value in the map of its region, zero in the others.

    Parameters
    ----------
    frames : numpy.ndarray
        N x H x W x 3 uint8.
    bounds : numpy.ndarray
        N x (regions - 1) x 3, from :func:`region_bounds` (of these frames or of the frames they were
        resized from).

    Returns
    -------
    numpy.ndarray
        N x H x W x 3 * regions uint8, brightest region first: channels 3j .. 3j + 2 are region N - j.
    """
    n, h, w, c = frames.shape
    regions = bounds.shape[1] + 1
    out = np.zeros((n, h, w, c * regions), np.uint8)
    codes = np.arange(CODES)
    for i in range(n):
        for ch in range(c):
            region_of = (codes[:, None] > bounds[i, :, ch][None, :]).sum(axis=1)  # 0 (darkest) .. N - 1
            x = frames[i, ..., ch]
            region = region_of[x]
            for j in range(regions):
                out[i, ..., c * j + ch] = np.where(region == regions - 1 - j, x, 0)
    return out


def network_inputs(frames: Frames, sparam_size: int) -> tuple[Frames, F32, F32]:
    """What the network reads: SParam-Net's view with its maps (uint8), the frame (float codes), the bounds.

    One definition, used by training, the LiteRT engine and the float twin alike. The view is the frame
    resized to ``sparam_size``² (Pillow's bilinear), its maps cut by the bounds of the frame itself.
    """
    bounds = region_bounds(frames)
    view = resize_bilinear(frames, sparam_size, sparam_size)
    sparam_view = np.concatenate([view, region_maps(view, bounds)], axis=-1)
    unit = frames.astype(np.float32) * np.float32(1.0 / 255.0)
    return sparam_view, unit, bounds_tensor(bounds)


def anchor_pq_lut(colour: ColourDescription) -> F32:
    """PQ code of each code value's BT.2408 placement (203 cd/m² white): the head's ``anchor`` input."""
    return np.asarray(eotf_inverse_st2084(colour.linear_lut(SDR_WHITE_NITS)), np.float32)


class Predictor(Runtime, Protocol):
    """What the operator needs from a runtime: ``meta`` (``stride``, ``sparam_size`` ...) and ``run``."""

    def run(self, frames: Frames, anchor: F32, clock: StageClock) -> F32:
        """N x h x w x 3 uint8 frames (sides multiples of ``stride``) and their anchors -> logit offsets."""
        ...


class RegionLSTMEngine(LearnedEngine):
    """The exported model: int8 SParam-Net + float-activation head, each a :class:`LiteRTModel`.

    Raises
    ------
    EngineError
        If the model has not been exported to ``directory``.
    """

    name = "region_lstm"
    meta_file = META_FILE
    dir_env = DIR_ENV

    def run(self, frames: Frames, anchor: F32, clock: StageClock) -> F32:
        """Offsets, charging ``backbone`` (maps, int8 SParam-Net) and ``head`` (the rest) to ``clock``."""
        sparam_view, unit, bounds = network_inputs(frames, int(self.meta["sparam_size"]))
        (curve,) = self.features.run({SPARAM_INPUT: sparam_view})
        clock.lap("backbone")
        inputs = {FRAME_INPUT: unit, ANCHOR_INPUT: anchor, BOUNDS_INPUT: bounds, CURVE_INPUT: curve}
        (offsets,) = self.head.run(inputs)
        clock.lap("head")
        return np.asarray(offsets, np.float32)


class RegionLSTM(ModedLearnedOperator[Predictor]):
    """Learned ITM: region maps, SParam-Net's anchored inverse S-curve, a ConvLSTM and an FSRCNN decoder.

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    service.errors.EngineError
        If the model is not exported yet (the message says how) or LiteRT fails.
    """

    info = OperatorInfo(
        "region_lstm",
        "Region-map ConvLSTM (learned; five cumulative-histogram region maps, an inverse S-curve anchored on "
        "the BT.2408 mid-tones, a ConvLSTM over the maps at 1/4 resolution and an FSRCNN decoder; run on a "
        "512 px view (fast) or at native resolution (quality))",
        (PEAK_PARAM, MODE_PARAM),
    )
    engine_type = RegionLSTMEngine
    default_stride = 4  # the ConvLSTM's quarter resolution

    def offsets(self, small: Frames, colour: ColourDescription) -> F32:
        """The network's offsets; it reads the PQ of its input's BT.2408 placement as its anchor."""
        anchor = anchor_pq_lut(colour)[small]
        self.clock.lap("preprocess")
        return self.engine.run(small, anchor, self.clock)
