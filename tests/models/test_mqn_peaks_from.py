"""``models.mqn.evaluate.PeaksFrom``: one model's curves with another's peak curves, for the card's rows."""

from typing import Any

import numpy as np
import pytest

from models.mqn.evaluate import Grid, PeaksFrom, View
from service.timing import StageClock

KNOTS = [0.0, 1.0, 50.0, 203.0]
K = len(KNOTS) - 1


class Fixed:
    """A predictor that answers every view with the same grid, and counts the views it saw."""

    def __init__(self, grid: Grid, paired: bool = True, knots: list[float] = KNOTS) -> None:
        self.grid = grid
        self.views: list[View] = []
        self.stride = 32
        self.meta: dict[str, Any] = {"curves": {"knots_nits": knots, "floor": 0.6, "paired": paired}}

    def run(self, sdr: View, clock: StageClock | None = None, cells: Grid | None = None) -> Grid:
        self.views.append(sdr)
        return self.grid


def test_peak_curves_come_from_the_other_model_and_never_fall_below_the_base() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, (1, 2, 4, 2 * K + 2)).astype(np.float32)
    other = rng.uniform(0.0, 0.8, (1, 2, 4, 2 * K + 2)).astype(np.float32)
    first, second = Fixed(base), Fixed(other)
    view = np.zeros((1, 64, 128, 3), np.uint8)
    out = PeaksFrom(first, second).run(view)
    np.testing.assert_array_equal(out[..., :K], base[..., :K])  # base curves
    np.testing.assert_array_equal(out[..., 2 * K :], base[..., 2 * K :])  # saturation
    lifted = np.maximum(other[..., K : 2 * K], base[..., :K])
    np.testing.assert_allclose(out[..., K : 2 * K], lifted, atol=1e-6)
    assert first.views[0] is view and second.views[0] is view  # both models saw the same view


@pytest.mark.parametrize(
    "peaks",
    [Fixed(np.zeros(1, np.float32), paired=False), Fixed(np.zeros(1, np.float32), knots=[0.0, 203.0])],
)
def test_models_with_another_curve_convention_are_refused(peaks: Fixed) -> None:
    with pytest.raises(ValueError, match="paired curves at the same knots"):
        PeaksFrom(Fixed(np.zeros(1, np.float32)), peaks)
