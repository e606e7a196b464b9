"""Per-cell statistics of the full-resolution frame, for a network that sees the frame only downscaled.

Downscaled to the network's view, a string of LEDs a pixel wide becomes a grey smear, and the same smear
can be a lit wall seen from afar: at 192 px the network cannot tell them apart, and at 512 px it sees them
differently again (the ``mqn`` lamps followed the view size in every model up to ``mqn_v14``). The full
frame can: each grid cell gets the mean :func:`~service.operators.curve_grid.peak_weight` of its pixels
(how much of it is small bright structure standing above its surroundings) and the share of its pixels at
or above ``NEAR_WHITE`` of SDR white (how much of it is bright at all). Both are shares of the cell's area,
so the same picture at another size, or seen through another view size, gives about the same numbers. A
square root spreads the small shares lamps occupy.

A pixel belongs to the cell ``floor(row * gh / H)``, ``floor(col * gw / W)``: when the frame is a whole
number of cells, exactly the block means ``models.mqn.layers.CellStats`` computes in training.
"""

import numba
import numpy as np
import numpy.typing as npt

from service.colour.scaling import SDR_WHITE_NITS
from service.colour.ycbcr import LUMA_BT2020
from service.operators.curve_grid import PeakLight

NEAR_WHITE = 0.9
"""Luminance, as a share of SDR white, from which a pixel counts as near white."""
CHANNELS = 2
"""Statistics per cell: sqrt(mean peak weight), sqrt(share near white)."""


def cell_starts(size: int, cells: int) -> npt.NDArray[np.int64]:
    """First pixel of each of ``cells`` cells along a side of ``size`` pixels, and ``size`` at the end."""
    c = np.arange(cells + 1, dtype=np.int64)
    return -(-c * size // cells)


def cell_stats_reference(lit: PeakLight, grid: tuple[int, int]) -> npt.NDArray[np.float32]:
    """NumPy statement of :func:`cell_stats` (float64 sums): the kernel's test oracle."""
    n, h, w, _ = lit.light.shape
    y = lit.light.astype(np.float64) @ np.asarray(LUMA_BT2020, np.float64)
    near = y >= NEAR_WHITE * SDR_WHITE_NITS
    planes = np.stack([lit.weights.astype(np.float64), near.astype(np.float64)], axis=-1)
    summed = np.zeros((n, h + 1, w + 1, CHANNELS))
    summed[:, 1:, 1:] = planes.cumsum(axis=1).cumsum(axis=2)
    rows, cols = cell_starts(h, grid[0]), cell_starts(w, grid[1])
    r0, r1 = rows[:-1, None], rows[1:, None]
    c0, c1 = cols[None, :-1], cols[None, 1:]
    sums = summed[:, r1, c1] - summed[:, r0, c1] - summed[:, r1, c0] + summed[:, r0, c0]
    area = ((r1 - r0) * (c1 - c0)).astype(np.float64)[None, :, :, None]
    means = np.divide(sums, area, out=np.zeros_like(sums), where=area > 0)
    return np.asarray(np.sqrt(means), np.float32)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _cell_stats_kernel(light, weights, rows, cols, threshold, out):  # type: ignore[no-untyped-def]
    # light N x H x W*3 float32 (BT.2020), weights N x H x W, rows / cols the cell starts (cell_starts),
    # out N x gh x gw x 2. One task per frame and grid row; float64 sums, as the reference.
    n, _, w = weights.shape
    gh = rows.shape[0] - 1
    gw = cols.shape[0] - 1
    cell_of = np.empty(w, np.int64)
    for c in range(gw):
        cell_of[cols[c] : cols[c + 1]] = c
    wr, wg, wb = LUMA_BT2020
    for task in numba.prange(n * gh):
        f = task // gh
        cy = task % gh
        peaks = np.zeros(gw, np.float64)
        bright = np.zeros(gw, np.float64)
        for row in range(rows[cy], rows[cy + 1]):
            rgb = light[f, row]
            weight = weights[f, row]
            for col in range(w):
                c = cell_of[col]
                peaks[c] += weight[col]
                y = wr * rgb[3 * col] + wg * rgb[3 * col + 1] + wb * rgb[3 * col + 2]
                if y >= threshold:
                    bright[c] += 1.0
        for c in range(gw):
            area = (rows[cy + 1] - rows[cy]) * (cols[c + 1] - cols[c])
            if area > 0:
                out[f, cy, c, 0] = np.sqrt(peaks[c] / area)
                out[f, cy, c, 1] = np.sqrt(bright[c] / area)
            else:  # a frame narrower than the grid leaves some cells without pixels
                out[f, cy, c, 0] = 0.0
                out[f, cy, c, 1] = 0.0


def cell_stats(lit: PeakLight, grid: tuple[int, int]) -> npt.NDArray[np.float32]:
    """N x gh x gw x 2 float32: each grid cell's sqrt(mean peak weight) and sqrt(share near white)."""
    n, h, w, _ = lit.light.shape
    out = np.empty((n, grid[0], grid[1], CHANNELS), np.float32)
    _cell_stats_kernel(
        lit.light.reshape(n, h, w * 3),
        lit.weights,
        cell_starts(h, grid[0]),
        cell_starts(w, grid[1]),
        NEAR_WHITE * SDR_WHITE_NITS,
        out,
    )
    return out
