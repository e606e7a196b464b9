"""Properties of the classical operators (service/operators/classical.py) over every SDR colour description.

The example tests check one peak and BT.709 video; here any peak, transfer and primaries: the grey curve
never decreases, output is finite and within [0, bound], and each pixel's output depends on that pixel only
(tiling, cropping and batching never change a pixel, the rule of service/operators/base.py).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.colour.description import ColourDescription
from service.colour.scaling import SDR_WHITE_NITS
from service.colour.tags import Primaries, Transfer
from service.operators import create_operator
from service.operators.base import Operator
from tests.fuzz.strategies import uint8_frames
from tests.models.markers import needs_artifacts, needs_litert

OPERATORS = ["bt2408", "bt2446a", "inverse_reinhard"]
SDR_TRANSFERS = [t for t in Transfer if t not in (Transfer.SMPTE2084, Transfer.ARIB_STD_B67, Transfer.LINEAR)]
SDR_TRANSFERS.remove(Transfer.UNSPECIFIED)
COLOURS = st.builds(ColourDescription, st.sampled_from(SDR_TRANSFERS), st.sampled_from(list(Primaries)))
PEAKS = st.floats(SDR_WHITE_NITS, 10000.0)
"""From 203 up: below SDR white, inverse_reinhard refuses its default key and bt2408 is not an expansion."""


def bound(op: Operator) -> float:
    """bt2408 never expands: SDR white stays at 203 cd/m² whatever the peak (BT.2408 clause 5.1.1)."""
    return SDR_WHITE_NITS if op.name == "bt2408" else op.peak_nits


@pytest.mark.parametrize("name", OPERATORS)
@given(peak=PEAKS, colour=COLOURS, a=st.integers(0, 255), b=st.integers(0, 255))
def test_grey_curve_is_monotonic_and_reaches_no_further_than_the_bound(
    name: str, peak: float, colour: ColourDescription, a: int, b: int
) -> None:
    op = create_operator(name, peak_nits=peak)
    lo, hi = sorted((a, b))
    grey = np.array([lo, hi, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=3)
    out = op(grey, colour)[0, 0].max(axis=-1)
    assert 0.0 <= out[0] <= out[1] <= out[2] <= bound(op) * (1 + 1e-5)


@pytest.mark.parametrize("name", OPERATORS)
@given(peak=PEAKS, colour=COLOURS, frames=uint8_frames(batch=True))
def test_any_colour_gives_finite_light_within_the_bound(
    name: str, peak: float, colour: ColourDescription, frames: np.ndarray
) -> None:
    op = create_operator(name, peak_nits=peak)
    out = op(frames, colour)
    assert out.shape == frames.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert out.min() >= 0.0 and out.max() <= bound(op) * (1 + 1e-5)


@pytest.mark.parametrize("name", OPERATORS)
@given(colour=COLOURS, frames=uint8_frames(batch=True), data=st.data())
def test_a_pixel_depends_on_that_pixel_only(
    name: str, colour: ColourDescription, frames: np.ndarray, data: st.DataObject
) -> None:
    op = create_operator(name, peak_nits=1000.0)
    whole = op(frames, colour)
    n, h, w, _ = frames.shape
    i, y, x = (
        data.draw(st.integers(0, n - 1)),
        data.draw(st.integers(0, h - 1)),
        data.draw(st.integers(0, w - 1)),
    )
    alone = op(np.ascontiguousarray(frames[i : i + 1, y : y + 1, x : x + 1]), colour)
    np.testing.assert_array_equal(alone[0, 0, 0], whole[i, y, x])


@pytest.mark.litert
@needs_litert
@needs_artifacts
@given(
    mode=st.sampled_from(["fast", "quality"]),
    peak=st.floats(100.0, 10000.0),
    colour=COLOURS,
    frames=uint8_frames(max_side=24, batch=True),
)
def test_mqn_gives_finite_light_within_the_peak_and_ignores_batch_mates(
    mode: str, peak: float, colour: ColourDescription, frames: np.ndarray
) -> None:
    """Not per-pixel (curves are chosen from a low-resolution view), but bounded and frame-local."""
    op = create_operator("mqn", peak_nits=peak, mode=mode)
    out = op(frames, colour)
    assert out.shape == frames.shape and np.all(np.isfinite(out))
    assert out.min() >= 0.0 and out.max() <= peak * (1 + 1e-5)
    for i in range(len(frames)):
        np.testing.assert_array_equal(op(frames[i : i + 1], colour)[0], out[i])
