"""Pillow-exact bilinear downscale of uint8 frames, in Numba (the network's view of a frame).

The ``mqn`` network was trained on SDR downscaled by Pillow's ``BILINEAR`` (``models.mqn.data.downscale``);
serving must feed it the very same pixels, but Pillow works on one 8-bit image at a time and holds the GIL
between calls. This mirrors Pillow's Resample.c (the triangle filter widened on downscale, 22-bit fixed
point, horizontal pass into uint8 rows, then vertical) on whole batches, in parallel, bit for bit.
"""

import math
from functools import cache

import numba
import numpy as np
import numpy.typing as npt

_RESAMPLE_BITS = 22
"""Fixed-point precision of Pillow's 8-bit resampler (``PRECISION_BITS`` in libImaging/Resample.c)."""


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
    w = src.shape[1] // 3
    for i in numba.prange(th):
        row = src[i + y0]
        trow = tmp[i]
        # The row's channels as int32 planes, so each output's taps are contiguous slices: the
        # multiply-adds vectorise (1.7x faster than strided reads of the interleaved row).
        planes = np.empty((3, w), np.int32)
        red = planes[0]
        green = planes[1]
        blue = planes[2]
        for x in range(w):
            red[x] = row[3 * x]
            green[x] = row[3 * x + 1]
            blue[x] = row[3 * x + 2]
        for xx in range(ow):
            xmin = bx[xx, 0]
            count = bx[xx, 1]
            k = kx[xx, :count]
            r = red[xmin : xmin + count]
            g = green[xmin : xmin + count]
            b = blue[xmin : xmin + count]
            s0 = half
            s1 = half
            s2 = half
            for x in range(count):
                s0 += r[x] * k[x]
                s1 += g[x] * k[x]
                s2 += b[x] * k[x]
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


def resize_bilinear(frames: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
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
