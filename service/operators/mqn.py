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

import math
from functools import cache

import numba
import numpy as np
import numpy.typing as npt

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
_RESAMPLE_BITS = 22
"""Fixed-point precision of Pillow's 8-bit resampler (``PRECISION_BITS`` in libImaging/Resample.c)."""


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


@numba.njit(parallel=True, cache=True)
def _gain_and_guide(pq, small, lut_nits, eps, gain, guide):  # type: ignore[no-untyped-def]
    # Processing resolution, one pass: predicted PQ -> cd/m² (float64 ST 2084 EOTF), the gain over
    # the BT.2408 placement of the same pixel, and the guide Y' (luma of code values, [0, 1]).
    n, h, w, _ = pq.shape
    wr = np.float32(LUMA_CODE[0])
    wg = np.float32(LUMA_CODE[1])
    wb = np.float32(LUMA_CODE[2])
    for k in numba.prange(n * h):
        f = k // h
        row = k % h
        for col in range(w):
            for c in range(3):
                e = min(max(np.float64(pq[f, row, col, c]), 0.0), 1.0) ** (1.0 / _PQ_M2)
                nits = 10000.0 * (max(e - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * e)) ** (1.0 / _PQ_M1)
                gain[f, row, col, c] = (np.float32(nits) + eps) / (lut_nits[small[f, row, col, c]] + eps)
            luma = (
                wr * np.float32(small[f, row, col, 0])
                + wg * np.float32(small[f, row, col, 1])
                + wb * np.float32(small[f, row, col, 2])
            )
            guide[f, row, col, 0] = luma / np.float32(255.0)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _apply_gain(frames, lut, coef_a, coef_b, matrix, peak, eps, out):  # type: ignore[no-untyped-def]
    # Flat rows (frames N x H x W*3 uint8, coef_a/b N x h x w*3, out N x H x W*3) and scalar matrix entries
    # (the service/colour/kernels.py pattern); per pixel: bilinear a, b -> gain = a * guide + b -> BT.2020.
    n, h, w3 = frames.shape
    w = w3 // 3
    lh = coef_a.shape[1]
    lw = coef_a.shape[2] // 3
    m00, m01, m02 = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    m10, m11, m12 = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    m20, m21, m22 = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    lute = np.empty(256, np.float32)
    for i in range(256):
        lute[i] = lut[i] + eps
    x0s = np.empty(w, np.int64)
    x1s = np.empty(w, np.int64)
    fxs = np.empty(w, np.float32)
    for col in range(w):
        x = min(max((col + 0.5) * lw / w - 0.5, 0.0), lw - 1.0)
        x0s[col] = int(x) * 3
        x1s[col] = min(int(x) + 1, lw - 1) * 3
        fxs[col] = x - int(x)
    wr = np.float32(0.2126 / 255.0)
    wg = np.float32(0.7152 / 255.0)
    wb = np.float32(0.0722 / 255.0)
    for k in numba.prange(n * h):
        f = k // h
        row = k % h
        y = min(max((row + 0.5) * lh / h - 0.5, 0.0), lh - 1.0)
        y0 = int(y)
        y1 = min(y0 + 1, lh - 1)
        fy = np.float32(y - y0)
        gy = 1 - fy
        a0 = coef_a[f, y0]
        a1 = coef_a[f, y1]
        b0 = coef_b[f, y0]
        b1 = coef_b[f, y1]
        ra = np.empty(lw * 3, np.float32)
        rb = np.empty(lw * 3, np.float32)
        for j in range(lw * 3):
            ra[j] = a0[j] * gy + a1[j] * fy
            rb[j] = b0[j] * gy + b1[j] * fy
        src = frames[f, row]
        dst = out[f, row]
        for col in range(w):
            x0 = x0s[col]
            x1 = x1s[col]
            fx = fxs[col]
            cr = src[3 * col]
            cg = src[3 * col + 1]
            cb = src[3 * col + 2]
            guide = wr * cr + wg * cg + wb * cb
            ar = ra[x0] + (ra[x1] - ra[x0]) * fx
            ag = ra[x0 + 1] + (ra[x1 + 1] - ra[x0 + 1]) * fx
            ab = ra[x0 + 2] + (ra[x1 + 2] - ra[x0 + 2]) * fx
            br = rb[x0] + (rb[x1] - rb[x0]) * fx
            bg = rb[x0 + 1] + (rb[x1 + 1] - rb[x0 + 1]) * fx
            bb = rb[x0 + 2] + (rb[x1 + 2] - rb[x0 + 2]) * fx
            lr = lute[cr] * max(ar * guide + br, 0.0) - eps
            lg = lute[cg] * max(ag * guide + bg, 0.0) - eps
            lb = lute[cb] * max(ab * guide + bb, 0.0) - eps
            dst[3 * col] = min(max(m00 * lr + m01 * lg + m02 * lb, 0.0), peak)
            dst[3 * col + 1] = min(max(m10 * lr + m11 * lg + m12 * lb, 0.0), peak)
            dst[3 * col + 2] = min(max(m20 * lr + m21 * lg + m22 * lb, 0.0), peak)


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
    a = np.empty(target.shape, np.float32)
    b = np.empty(target.shape, np.float32)
    g = np.ascontiguousarray(guide[..., 0], np.float32)
    _guided_kernel(g, np.ascontiguousarray(target, np.float32), radius, np.float32(eps), a, b)
    return a, b


@cache
def _bilinear_taps(in_size: int, out_size: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Pillow's BILINEAR (triangle, support scaled on downscale) taps for one axis, in its fixed point.

    Mirrors ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` of Pillow's Resample.c (whole-image box), so
    :func:`resize_bilinear` is bit-identical to ``Image.resize(..., BILINEAR)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``out_size x ksize`` int32 weights and ``out_size x 2`` (first input index, tap count).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale
    ksize = math.ceil(support) * 2 + 1
    taps = np.zeros((out_size, ksize), np.int32)
    bounds = np.zeros((out_size, 2), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        weights = [max(1.0 - abs((x + xmin - center + 0.5) / filterscale), 0.0) for x in range(count)]
        total = 0.0
        for wt in weights:
            total += wt
        for x, wt in enumerate(weights):
            k = wt / total if total != 0.0 else wt
            taps[xx, x] = int(0.5 + k * (1 << _RESAMPLE_BITS))
        bounds[xx] = (xmin, count)
    return taps, bounds


@numba.njit(parallel=True, cache=True)
def _resample_kernel(src, kx, bx, ky, by, y0, tmp, out):  # type: ignore[no-untyped-def]
    # Pillow's order and rounding: horizontal pass into uint8 rows, then vertical pass; flat (H, W*3) rows.
    th = tmp.shape[0]
    ow = tmp.shape[1] // 3
    oh = out.shape[0]
    half = np.int32(1 << (_RESAMPLE_BITS - 1))
    for i in numba.prange(th):
        row = src[i + y0]
        trow = tmp[i]
        for xx in range(ow):
            xmin = bx[xx, 0] * 3
            s0 = half
            s1 = half
            s2 = half
            for x in range(bx[xx, 1]):
                k = kx[xx, x]
                p = xmin + 3 * x
                s0 += np.int32(row[p]) * k
                s1 += np.int32(row[p + 1]) * k
                s2 += np.int32(row[p + 2]) * k
            trow[3 * xx] = min(max(s0 >> _RESAMPLE_BITS, 0), 255)
            trow[3 * xx + 1] = min(max(s1 >> _RESAMPLE_BITS, 0), 255)
            trow[3 * xx + 2] = min(max(s2 >> _RESAMPLE_BITS, 0), 255)
    n3 = ow * 3
    for yy in numba.prange(oh):
        acc = np.empty(n3, np.int32)
        acc[:] = half
        for y in range(by[yy, 1]):
            k = ky[yy, y]
            trow = tmp[by[yy, 0] + y]
            for j in range(n3):
                acc[j] += np.int32(trow[j]) * k
        orow = out[yy]
        for j in range(n3):
            orow[j] = min(max(acc[j] >> _RESAMPLE_BITS, 0), 255)


def resize_bilinear(frames: Frames, height: int, width: int) -> Frames:
    """N x H x W x 3 uint8 -> N x height x width x 3, bit-identical to Pillow's ``BILINEAR`` resize."""
    n, h, w, _ = frames.shape
    kx, bx = _bilinear_taps(w, width)
    ky, by = _bilinear_taps(h, height)
    y0 = int(by[0, 0])
    rows = int(by[-1, 0] + by[-1, 1]) - y0
    by_shifted = by.copy()
    by_shifted[:, 0] -= y0
    out = np.empty((n, height, width, 3), np.uint8)
    tmp = np.empty((rows, width * 3), np.uint8)
    src = np.ascontiguousarray(frames).reshape(n, h, w * 3)
    for f in range(n):
        _resample_kernel(src[f], kx, bx, ky, by_shifted, y0, tmp, out[f].reshape(height, width * 3))
    return out


@numba.njit(cache=True)
def _box2d(x, r, tmp, out):  # type: ignore[no-untyped-def]
    # Mean over a (2r+1)² window of one H x W plane, edges replicated (running sums).
    h, w = x.shape
    k = 2 * r + 1
    for i in range(h):
        acc = np.float32(0.0)
        for t in range(-r, r + 1):
            acc += x[i, min(max(t, 0), w - 1)]
        tmp[i, 0] = acc
        for j in range(1, w):
            acc += x[i, min(j + r, w - 1)] - x[i, max(j - r - 1, 0)]
            tmp[i, j] = acc
    acc_row = np.zeros(w, np.float32)  # then along H, a whole row at a time (contiguous, vectorises)
    for t in range(-r, r + 1):
        src = tmp[min(max(t, 0), h - 1)]
        for j in range(w):
            acc_row[j] += src[j]
    for j in range(w):
        out[0, j] = acc_row[j] / (k * k)
    for i in range(1, h):
        add = tmp[min(i + r, h - 1)]
        sub = tmp[max(i - r - 1, 0)]
        for j in range(w):
            acc_row[j] += add[j] - sub[j]
            out[i, j] = acc_row[j] / (k * k)


@numba.njit(parallel=True, cache=True)
def _guided_kernel(guide, target, r, eps, a_out, b_out):  # type: ignore[no-untyped-def]
    # guide N x h x w; target, a_out, b_out N x h x w x C: one task per (frame, channel) plane.
    n, h, w, ch = target.shape
    for task in numba.prange(n * ch):
        f = task // ch
        c = task % ch
        tmp = np.empty((h, w), np.float32)
        g = guide[f]
        p = np.ascontiguousarray(target[f, :, :, c])
        mean_i = np.empty((h, w), np.float32)
        mean_ii = np.empty((h, w), np.float32)
        mean_p = np.empty((h, w), np.float32)
        mean_ip = np.empty((h, w), np.float32)
        _box2d(g, r, tmp, mean_i)
        _box2d(p, r, tmp, mean_p)
        _box2d(g * p, r, tmp, mean_ip)
        _box2d(g * g, r, tmp, mean_ii)
        a = np.empty((h, w), np.float32)
        b = np.empty((h, w), np.float32)
        for i in range(h):
            for j in range(w):
                cov = mean_ip[i, j] - mean_i[i, j] * mean_p[i, j]
                var = mean_ii[i, j] - mean_i[i, j] * mean_i[i, j]
                av = cov / (var + eps)
                a[i, j] = av
                b[i, j] = mean_p[i, j] - av * mean_i[i, j]
        out = np.empty((h, w), np.float32)
        _box2d(a, r, tmp, out)
        a_out[f, :, :, c] = out
        _box2d(b, r, tmp, out)
        b_out[f, :, :, c] = out


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
        # XNNPACK gets the calling worker's thread budget (the pool sets Numba's per thread): two workers
        # with one thread each outrun one worker with two, since XNNPACK scales poorly on 384-px inputs.
        self.engine: Predictor = engine if engine is not None else _engine(numba.get_num_threads())
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
            pq = self.engine.run(frames, lut_pq[frames], self.clock)
            _pq_to_nits(pq, matrix, np.float32(self.clip_nits), out)
            return out
        small = resize_bilinear(frames, ph, pw)
        pq = self.engine.run(small, lut_pq[small], self.clock)
        gain = np.empty(small.shape, np.float32)
        guide = np.empty((n, ph, pw, 1), np.float32)
        _gain_and_guide(pq, small, lut_nits, np.float32(GAIN_EPS_NITS), gain, guide)
        a, b = guided_coefficients(guide, gain)
        _apply_gain(
            frames.reshape(n, h, w * 3),
            lut_nits,
            a.reshape(n, ph, pw * 3),
            b.reshape(n, ph, pw * 3),
            matrix,
            np.float32(self.clip_nits),
            np.float32(GAIN_EPS_NITS),
            out.reshape(n, h, w * 3),
        )
        return out

