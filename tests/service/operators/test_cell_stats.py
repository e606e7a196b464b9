"""Per-cell statistics of the full-resolution frame (format-6 ``mqn``): the kernel against its NumPy
statement, and the property they exist for, that the same picture at another size reads the same."""

import numpy as np
import pytest

from service.colour.description import ColourDescription
from service.colour.scaling import SDR_WHITE_NITS
from service.operators.cell_stats import cell_stats, cell_stats_reference
from service.operators.curve_grid import CurveSpec, cell_starts, peak_light, slice_curves

VIDEO = ColourDescription.video()
LUT = VIDEO.linear_lut(SDR_WHITE_NITS)
MATRIX = VIDEO.to_bt2020_matrix()


def _lit(frames: np.ndarray, across: int, ratio: float = 1.0):  # type: ignore[no-untyped-def]
    return peak_light(frames, LUT, MATRIX, ratio, cells_across=across)


def _night(h: int, w: int) -> np.ndarray:
    """A dark frame with a string of one-pixel lamps on its left and a large lit wall on its right."""
    frame = np.full((1, h, w, 3), 20, np.uint8)
    frame[0, h // 2, 4 : w // 2 - 4 : 6] = 250
    frame[0, h // 4 : 3 * h // 4, 3 * w // 4 :] = 250
    return frame


@pytest.mark.parametrize(("shape", "grid"), [((2, 96, 160), (6, 10)), ((1, 90, 125), (7, 13))])
def test_kernel_matches_the_reference(shape: tuple[int, int, int], grid: tuple[int, int]) -> None:
    """Whole and fractional cells (the runtime's frames are rarely a whole number of cells)."""
    rng = np.random.default_rng(5)
    frames = (rng.random((*shape, 3)) ** 3 * 255).astype(np.uint8)
    frames[:, 10:12, 20:60:5] = 250
    lit = _lit(frames, grid[1])
    np.testing.assert_allclose(cell_stats(lit, grid), cell_stats_reference(lit, grid), atol=1e-6)


def test_cells_partition_the_frame() -> None:
    for size, cells in ((96, 6), (125, 13), (7, 3), (2, 4)):
        starts = cell_starts(size, cells)
        assert starts[0] == 0 and starts[-1] == size and np.all(np.diff(starts) >= 0)
        owner = np.arange(size) * cells // size  # pixel i belongs to cell floor(i * cells / size)
        assert all(starts[c] <= i < starts[c + 1] for i, c in enumerate(owner))


def test_a_frame_narrower_than_the_grid_leaves_empty_cells_at_zero() -> None:
    frames = np.full((1, 2, 3, 3), 250, np.uint8)
    lit = _lit(frames, 6)
    got = cell_stats(lit, (4, 6))
    np.testing.assert_array_equal(got, cell_stats_reference(lit, (4, 6)))
    assert np.all(np.isfinite(got)) and (got == 0).any() and (got > 0).any()


def test_lamps_and_a_lit_wall_read_differently() -> None:
    """Every near-white pixel of the lamps' cell is peak, the wall's are not: what the view hides."""
    stats = cell_stats(_lit(_night(180, 320), 4), (2, 4))[0]
    lamps, wall = stats[1, 0], stats[1, 3]  # the lamp string crosses row 90, the start of grid row 1
    assert lamps[0] > 0.03 and lamps[0] > 0.9 * lamps[1]
    assert wall[1] > 0.7 and wall[0] < 0.1


def test_the_same_picture_at_twice_the_size_reads_the_same() -> None:
    """The opening's radius follows the frame size and the statistics are shares of each cell's area."""
    small = _night(360, 640)
    large = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)
    a = cell_stats(_lit(small, 12), (6, 12))
    b = cell_stats(_lit(large, 12), (6, 12))
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert a.max() > 0.3  # not a vacuous match of empty cells


def test_batch_mates_do_not_change_a_frame() -> None:
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    together = cell_stats(_lit(frames, 6), (4, 6))
    alone = cell_stats(_lit(frames[1:2], 6), (4, 6))
    np.testing.assert_array_equal(together[1], alone[0])


def test_slicing_with_the_first_pass_done_early_is_the_same() -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (2, 60, 90, 3), dtype=np.uint8)
    knots_nits = (0.0, 10.0, 100.0, 203.0)
    spec = CurveSpec(knots_nits, 0.6, 1000.0, paired=True, peak_ratio=2.0)
    knots = np.cumsum(rng.random((2, 3, 4, 6)) * 0.1, axis=-1).astype(np.float32)
    direct = slice_curves(frames, LUT, MATRIX, knots, spec)
    early = slice_curves(frames, LUT, MATRIX, knots, spec, _lit(frames, 4, 2.0))
    np.testing.assert_array_equal(direct, early)


def test_statistics_over_another_grid_than_the_sums_are_refused() -> None:
    lit = _lit(np.zeros((1, 32, 64, 3), np.uint8), 4)
    with pytest.raises(ValueError, match="cells across"):
        cell_stats(lit, (2, 5))
