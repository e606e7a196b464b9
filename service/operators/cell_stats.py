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

Measured so far: ``mqn_v16``, trained with them, did not use them (model card, Training); no shipped model
reads them yet.
"""

import numpy as np
import numpy.typing as npt

from service.colour.scaling import SDR_WHITE_NITS
from service.colour.ycbcr import LUMA_BT2020
from service.operators.curve_grid import NEAR_WHITE, PeakLight, cell_starts

CHANNELS = 2
"""Statistics per cell: sqrt(mean peak weight), sqrt(share near white)."""


def cell_stats_reference(lit: PeakLight, grid: tuple[int, int]) -> npt.NDArray[np.float32]:
    """NumPy statement of :func:`cell_stats` from the light and weights alone (float64): its test oracle."""
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


def cell_stats(lit: PeakLight, grid: tuple[int, int]) -> npt.NDArray[np.float32]:
    """N x gh x gw x 2 float32: each grid cell's sqrt(mean peak weight) and sqrt(share near white).

    From the row sums :func:`~service.operators.curve_grid.peak_light` took over the grid's columns
    (``cells_across`` = gw) while it computed the weights: only the rows are summed here.

    Raises
    ------
    ValueError
        If ``lit`` was summed over another number of columns than the grid has.
    """
    n, h = lit.weights.shape[:2]
    if lit.row_sums.shape[2] != grid[1]:
        across = lit.row_sums.shape[2]
        raise ValueError(f"the light was summed over {across} cells across; the grid has {grid[1]}")
    rows = cell_starts(h, grid[0])
    summed = np.zeros((n, h + 1, grid[1], CHANNELS))
    summed[:, 1:] = lit.row_sums.astype(np.float64).cumsum(axis=1)
    sums = summed[:, rows[1:]] - summed[:, rows[:-1]]
    area = (np.diff(rows)[:, None] * np.diff(lit.cols)[None, :]).astype(np.float64)[None, :, :, None]
    means = np.divide(sums, area, out=np.zeros_like(sums), where=area > 0)
    return np.asarray(np.sqrt(means), np.float32)
