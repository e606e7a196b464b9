"""The learned operator: MQN (Mixed Quantization Network) on LiteRT, in ``fast`` and ``quality`` modes.

The frame is downscaled (Pillow-exact bilinear) to a processing size: long side 128 px in ``fast`` mode,
512 px in ``quality`` mode (the model's metadata may name others), both sides multiples of the network
stride. The int8 backbone and the float head turn it into a grid of monotone tone curves, one per 16 x 16
processing pixels, and every full-resolution pixel reads the curve at its own place and its own luminance
(:mod:`service.operators.curve_grid`). Detail, edges and colour therefore come from the full-resolution SDR
frame itself; only the choice of curve is low-resolution, and a curve can only keep brighter pixels brighter.
A model whose metadata names a ``peak_long_side`` below the mode's (the shipped one: fast mode's 128 px) takes
the peak curves, the ones light sources read, from a second pass at that size in quality mode
(:func:`service.operators.curve_grid.with_coarse_peaks` says why).

Output is absolute display light: SDR white stays near 203 cd/m², highlights and light sources expand up to
1000 cd/m² (the training peak; a lower ``peak_nits`` clips the curves there, a higher one is not used).
"""

from functools import cache
from pathlib import Path

import numba

from service.colour.description import ColourDescription
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS
from service.inference.engine import ModelFiles, MQNEngine, Predictor, artifacts_dir
from service.operators.base import Frames, Mode, Nits, Operator, OperatorInfo, ParamSpec
from service.operators.cell_stats import cell_stats
from service.operators.classical import PEAK_PARAM
from service.operators.curve_grid import (
    SATURATION_RANGE,
    CurveSpec,
    peak_light,
    pinned_toe,
    slice_curves,
    with_coarse_peaks,
)
from service.operators.resample import resize_bilinear

MODES = tuple(mode.value for mode in Mode)
SHADOWS = ("model", "sdr")
"""``shadows``: the model's own toe, or the SDR's black level (:func:`curve_grid.pinned_toe`)."""
LONG_SIDES = {"fast": 128, "quality": 512}
"""Processing resolution (long side, px) per mode when the model's metadata names none."""
DIR_ENV = "ITM_MQN_DIR"
"""Environment variable naming another artefact directory (a candidate model, as the other learned
operators' ``ITM_<NAME>_DIR``)."""


@cache
def _engine(threads: int, directory: Path) -> MQNEngine:
    """One engine per process and model (it hands each thread its own interpreters)."""
    return MQNEngine(ModelFiles.load(directory), num_threads=threads)


def processing_size(height: int, width: int, long_side: int, stride: int = 32) -> tuple[int, int]:
    """Network input size: long side ``long_side``, both sides multiples of ``stride``."""
    scale = long_side / max(height, width)
    ph = max(stride, round(height * scale / stride) * stride)
    pw = max(stride, round(width * scale / stride) * stride)
    return ph, pw


class MQN(Operator):
    """Learned ITM: Mixed Quantization Network (int8 backbone + float head), trained here from scratch.

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    service.errors.EngineError
        If the model files are missing or LiteRT fails.
    """

    info = OperatorInfo(
        "mqn",
        "Mixed Quantization Network (learned; a grid of monotone tone curves from a 128 px (fast) or 512 px "
        "(quality) view, applied to each full-resolution pixel by its own luminance)",
        (
            PEAK_PARAM,
            ParamSpec(
                "mode", "fast", "fast (128 px grid, real time) or quality (512 px grid)", choices=MODES
            ),
            ParamSpec(
                "shadows",
                "model",
                "model (the network's own toe: lifts shadows by its guess at the camera curve, up to a stop) "
                "or sdr (below 3 cd/m² exactly the BT.2408 placement: the SDR's black level)",
                choices=SHADOWS,
            ),
        ),
    )

    def __init__(
        self,
        peak_nits: float = DEFAULT_PEAK_NITS,
        mode: str = "fast",
        engine: Predictor | None = None,
        shadows: str = "model",
    ) -> None:
        super().__init__(peak_nits)
        if mode not in MODES:
            raise ValueError(f"mode '{mode}' is not known; expected one of {MODES}")
        if shadows not in SHADOWS:
            raise ValueError(f"shadows '{shadows}' is not known; expected one of {SHADOWS}")
        self.mode = mode
        self.shadows = shadows
        # ``engine`` lets evaluation plug in the float Keras model; the service always uses LiteRT.
        # XNNPACK gets the calling worker's thread budget (the pool sets Numba's per thread).
        if engine is None:
            engine = _engine(numba.get_num_threads(), artifacts_dir(DIR_ENV))
        self.engine: Predictor = engine
        meta = self.engine.meta
        self.long_side = int(meta.get(f"{mode}_long_side", LONG_SIDES[mode]))
        curves = meta["curves"]
        low, high = curves.get("saturation_range", SATURATION_RANGE)
        # The network was trained for a 1000 cd/m² peak; a lower peak clips, a higher one is not used.
        self.spec = CurveSpec(
            knots_nits=tuple(float(k) for k in curves["knots_nits"]),
            floor=float(curves["floor"]),
            peak_nits=float(min(self.peak_nits, float(meta.get("peak_nits", DEFAULT_PEAK_NITS)))),
            paired=bool(curves.get("paired", False)),
            peak_ratio=float(curves.get("peak_ratio", 1.0)),
            saturation=bool(curves.get("saturation", False)),
            saturation_range=(float(low), float(high)),
        )
        self.reads_cells = bool(meta.get("cell_stats", False))
        # Peak curves from a coarser view than the mode's (with_coarse_peaks), if the model names one. Not for
        # a model that reads cell statistics: its coarse pass would need the statistics of the coarse grid.
        peak_side = int(meta.get("peak_long_side", 0))
        self.peak_long_side = (
            peak_side if self.spec.paired and not self.reads_cells and 0 < peak_side < self.long_side else 0
        )

    @property
    def params(self) -> dict[str, float | str]:
        """Peak and mode as run."""
        return {"peak_nits": self.peak_nits, "mode": self.mode, "shadows": self.shadows}

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Predict each frame's tone-curve grid from its own downscaled view and slice it at full size."""
        h, w = frames.shape[1:3]
        ph, pw = processing_size(h, w, self.long_side, self.engine.stride)
        small = resize_bilinear(frames, ph, pw)
        lut, matrix = colour.linear_lut(SDR_WHITE_NITS), colour.to_bt2020_matrix()
        lit = cells = None
        if self.reads_cells:  # the slicing's first pass, early: the network reads its per-cell statistics
            g = int(self.engine.meta["grid_stride"])
            lit = peak_light(frames, lut, matrix, self.spec.peak_ratio, cells_across=pw // g)
            cells = cell_stats(lit, (ph // g, pw // g))
        self.clock.lap("preprocess")
        knots = self.engine.run(small, self.clock, cells=cells)
        if self.peak_long_side:
            coarse = resize_bilinear(frames, *processing_size(h, w, self.peak_long_side, self.engine.stride))
            knots = with_coarse_peaks(knots, self.engine.run(coarse, self.clock), self.spec)
        if self.shadows == "sdr":
            knots = pinned_toe(knots, self.spec)
        return slice_curves(frames, lut, matrix, knots, self.spec, lit)
