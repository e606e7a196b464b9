"""The learned operator: MQN (Mixed Quantization Network) on LiteRT, in ``fast`` and ``quality`` modes.

``quality`` runs the int8 backbone and the float-activation head at the frame's own resolution (padded to
the network stride): best fidelity, ~1 s per 1080p frame on 2 cores, meant for offline jobs.

``fast`` runs the same network at a processing resolution (long side 384 px by default) and turns its output
into a *gain map*: per-channel ratio of the predicted HDR to the BT.2408 placement of the SDR. The gain
map is brought back to full resolution by guided upsampling (fast guided filter, He & Sun 2015), with the
full-resolution SDR luma as the guide, so gain edges follow image edges the way ISO 21496-1 gain maps and
HDRNet's bilateral grids do. Only the gain, never the image, is low-resolution: full-res detail comes from
the SDR frame itself.

Both modes output absolute display light: SDR white stays near 203 cd/m², highlights reach up to 1000 cd/m²
(the training peak; other ``peak_nits`` clip there, the model is not re-targeted).
"""

from functools import cache

import numba
import numpy as np
import numpy.typing as npt
from PIL import Image

from service.colour.pq import eotf_inverse_st2084
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS
from service.inference.engine import ModelFiles, MQNEngine, Predictor
from service.operators.base import ColourDescription, Frames, Nits, Operator, OperatorInfo, ParamSpec
from service.operators.classical import PEAK_PARAM

MODES = ("fast", "quality")
GAIN_EPS_NITS = 0.05
"""Offset inside the log-gain so pure black has a finite, smooth gain (cd/m², well below visibility)."""
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-3
"""Fast guided filter window radius (processing-res px) and regulariser (guide is luma code in [0, 1])."""
LUMA_CODE = (0.2126, 0.7152, 0.0722)
"""Weights for the non-linear guide signal Y' (BT.709 luma of code values)."""
_PQ_M1, _PQ_M2 = 2610 / 4096 / 4, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32


@cache
def _engine(threads: int) -> MQNEngine:
    """One engine per process (it hands each thread its own interpreters)."""
    return MQNEngine(ModelFiles.load(), num_threads=threads)


def _luts(colour: ColourDescription) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(code -> cd/m² at 203 white, code -> PQ of that): the BT.2408 placement the head adds to."""
    nits = colour.linear_lut(SDR_WHITE_NITS)
    return nits, np.asarray(eotf_inverse_st2084(nits), np.float32)


@numba.njit(parallel=True, cache=True)
def _pq_to_nits(pq, matrix, peak, out):  # type: ignore[no-untyped-def]
    n, h, w, _ = pq.shape
    for k in numba.prange(n * h):
        f = k // h
        row = k % h
        for col in range(w):
            lin = np.empty(3, np.float32)
            for c in range(3):
                e = min(max(pq[f, row, col, c], 0.0), 1.0) ** (1.0 / _PQ_M2)
                lin[c] = 10000.0 * (max(e - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * e)) ** (1.0 / _PQ_M1)
            for c in range(3):
                v = matrix[c, 0] * lin[0] + matrix[c, 1] * lin[1] + matrix[c, 2] * lin[2]
                out[f, row, col, c] = min(max(v, 0.0), peak)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _apply_gain(frames, lut, coef_a, coef_b, matrix, peak, eps, out):  # type: ignore[no-untyped-def]
    n, h, w, _ = frames.shape
    lh, lw = coef_a.shape[1], coef_a.shape[2]
    # Horizontal taps are the same for every row: compute them once.
    x0s = np.empty(w, np.int64)
    x1s = np.empty(w, np.int64)
    fxs = np.empty(w, np.float32)
    for col in range(w):
        x = min(max((col + 0.5) * lw / w - 0.5, 0.0), lw - 1.0)
        x0s[col] = int(x)
        x1s[col] = min(int(x) + 1, lw - 1)
        fxs[col] = x - int(x)
    for k in numba.prange(n * h):
        f = k // h
        row = k % h
        y = min(max((row + 0.5) * lh / h - 0.5, 0.0), lh - 1.0)
        y0 = int(y)
        y1 = min(y0 + 1, lh - 1)
        fy = np.float32(y - y0)
        # Separable bilinear: one vertical blend per low-res column, then two taps per pixel.
        ra = np.empty((lw, 3), np.float32)
        rb = np.empty((lw, 3), np.float32)
        for j in range(lw):
            for c in range(3):
                ra[j, c] = coef_a[f, y0, j, c] * (1 - fy) + coef_a[f, y1, j, c] * fy
                rb[j, c] = coef_b[f, y0, j, c] * (1 - fy) + coef_b[f, y1, j, c] * fy
        lin = np.empty(3, np.float32)
        for col in range(w):
            x0 = x0s[col]
            x1 = x1s[col]
            fx = fxs[col]
            r = frames[f, row, col, 0]
            g = frames[f, row, col, 1]
            b = frames[f, row, col, 2]
            guide = (
                np.float32(0.2126 / 255.0) * r
                + np.float32(0.7152 / 255.0) * g
                + np.float32(0.0722 / 255.0) * b
            )
            for c in range(3):
                a = ra[x0, c] + (ra[x1, c] - ra[x0, c]) * fx
                bb = rb[x0, c] + (rb[x1, c] - rb[x0, c]) * fx
                lin[c] = (lut[frames[f, row, col, c]] + eps) * max(a * guide + bb, 0.0) - eps
            for c in range(3):
                v = matrix[c, 0] * lin[0] + matrix[c, 1] * lin[1] + matrix[c, 2] * lin[2]
                out[f, row, col, c] = min(max(v, 0.0), peak)


@numba.njit(cache=True)
def _box_kernel(x, r, out):  # type: ignore[no-untyped-def]
    n, h, w, ch = x.shape
    k = 2 * r + 1
    tmp = np.empty((h, w), np.float32)
    for f in range(n):
        for c in range(ch):
            for i in range(h):  # running sum along W, edges replicated
                acc = np.float32(0.0)
                for t in range(-r, r + 1):
                    acc += x[f, i, min(max(t, 0), w - 1), c]
                tmp[i, 0] = acc
                for j in range(1, w):
                    acc += x[f, i, min(j + r, w - 1), c] - x[f, i, max(j - r - 1, 0), c]
                    tmp[i, j] = acc
            for j in range(w):  # then along H
                acc = np.float32(0.0)
                for t in range(-r, r + 1):
                    acc += tmp[min(max(t, 0), h - 1), j]
                out[f, 0, j, c] = acc / (k * k)
                for i in range(1, h):
                    acc += tmp[min(i + r, h - 1), j] - tmp[max(i - r - 1, 0), j]
                    out[f, i, j, c] = acc / (k * k)


def _box(x: npt.NDArray[np.float32], r: int) -> npt.NDArray[np.float32]:
    """Mean over a (2r+1)² window per frame/channel (N x H x W x C), edges replicated (running sums)."""
    out = np.empty(x.shape, np.float32)
    _box_kernel(np.ascontiguousarray(x, np.float32), r, out)
    return out


def guided_coefficients(
    guide: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    radius: int = GUIDE_RADIUS,
    eps: float = GUIDE_EPS,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Local affine fit ``target ≈ a * guide + b`` (He et al., guided filter), per frame and channel.

    Parameters
    ----------
    guide : numpy.ndarray
        N x h x w x 1 guide (luma code, [0, 1]).
    target : numpy.ndarray
        N x h x w x C signal to upsample (here: the linear gain ratio).

    Returns
    -------
    tuple of numpy.ndarray
        Box-smoothed ``a`` and ``b``, N x h x w x C, ready for bilinear upsampling.
    """
    mean_i = _box(guide, radius)
    mean_p = _box(target, radius)
    cov = _box(guide * target, radius) - mean_i * mean_p
    var = _box(guide * guide, radius) - mean_i * mean_i
    a = (cov / (var + np.float32(eps))).astype(np.float32)
    b = (mean_p - a * mean_i).astype(np.float32)
    return _box(a, radius), _box(b, radius)


def processing_size(height: int, width: int, long_side: int, stride: int = 32) -> tuple[int, int]:
    """Fast-mode network input size: long side ``long_side``, both sides multiples of ``stride``."""
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
        "Mixed Quantization Network (learned; fast = 384 px gain map + guided upsampling, quality = native)",
        (
            PEAK_PARAM,
            ParamSpec(
                "mode", "fast", "fast (real time) or quality (native resolution, offline)", choices=MODES
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
        self.engine: Predictor = engine if engine is not None else _engine(2)
        self.long_side = int(self.engine.meta.get("fast_long_side", 384))
        # The network was trained for a 1000 cd/m² peak; a lower peak clips, a higher one is not used.
        self.clip_nits = float(
            min(self.peak_nits, float(self.engine.meta.get("peak_nits", DEFAULT_PEAK_NITS)))
        )

    @property
    def params(self) -> dict[str, float | str]:
        """Peak and mode as run."""
        return {"peak_nits": self.peak_nits, "mode": self.mode}

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Predict HDR display light for each frame independently (see the module docstring for modes)."""
        lut_nits, lut_pq = _luts(colour)
        matrix = colour.to_bt2020_matrix().astype(np.float32)
        n, h, w, _ = frames.shape
        out = np.empty((n, h, w, 3), np.float32)
        ph, pw = processing_size(h, w, self.long_side, self.engine.stride)
        if self.mode == "quality" or ph * pw >= h * w:
            pq = self.engine.run(frames, lut_pq[frames])
            _pq_to_nits(pq, matrix, np.float32(self.clip_nits), out)
            return out
        small = np.stack(
            [np.asarray(Image.fromarray(f).resize((pw, ph), Image.Resampling.BILINEAR)) for f in frames]
        )
        pq = self.engine.run(small, lut_pq[small])
        pred = np.asarray(_decode_pq(pq), np.float32)
        gain = ((pred + GAIN_EPS_NITS) / (lut_nits[small] + GAIN_EPS_NITS)).astype(np.float32)
        guide = (small.astype(np.float32) @ np.asarray(LUMA_CODE, np.float32))[..., None] / 255.0
        a, b = guided_coefficients(guide, gain)
        _apply_gain(
            frames, lut_nits, a, b, matrix, np.float32(self.clip_nits), np.float32(GAIN_EPS_NITS), out
        )
        return out


def _decode_pq(pq: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """PQ code -> cd/m² (small processing-resolution arrays only; full-res goes through the kernels)."""
    e = np.clip(pq.astype(np.float64), 0.0, 1.0) ** (1.0 / _PQ_M2)
    return 10000.0 * (np.maximum(e - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * e)) ** (1.0 / _PQ_M1)
