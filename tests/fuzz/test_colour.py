"""Properties of the colour maths (service/colour): monotonic, bounded, and every inverse an inverse.

tests/service/colour pins the standards' reference values on fixed grids; these check the shape of each
function at arbitrary points, hostile values included, where a grid would miss a kink or a NaN.
"""

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.colour.curves import BT2446A_PEAK_NITS, bt2446a_expand_luma, reinhard_inverse
from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.primaries import (
    PRIMARIES_BT709,
    PRIMARIES_BT2020,
    PRIMARIES_DISPLAY_P3,
    PRIMARIES_SMPTE170M,
    Chromaticities,
    luma_coefficients,
    matrix_rgb_to_rgb,
    matrix_rgb_to_xyz,
)
from service.colour.scaling import PQ_PEAK_NITS
from service.colour.sdr_transfer import (
    eotf_bt1886,
    eotf_gamma,
    eotf_inverse_bt1886,
    eotf_inverse_srgb,
    eotf_srgb,
)
from service.colour.tags import Matrix, Range
from service.colour.ycbcr import (
    dequantize,
    luma_for,
    quantize,
    rgb_to_ycbcr,
    subsample_420_left,
    ycbcr_to_rgb,
)

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
UNIT = st.floats(0.0, 1.0)
NITS = st.floats(0.0, PQ_PEAK_NITS)


def arrays_of(elements: st.SearchStrategy[float], max_dims: int = 3) -> st.SearchStrategy[np.ndarray]:
    """n-dimensional float64 arrays (0-d included): the colour functions are all elementwise."""
    return hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=0, max_dims=max_dims, max_side=5), elements=elements
    )


ULPS = 4 * np.finfo(np.float64).eps
"""Monotonic to a few ulps in float64: the power functions are not correctly rounded, the rest keeps order."""


def assert_monotonic(f: Callable[[np.ndarray], np.ndarray], a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert f(np.array(lo)) <= f(np.array(hi)) * (1 + ULPS)


# -- PQ (SMPTE ST 2084) -----------------------------------------------------------------------------


@given(arrays_of(ANY_FLOAT))
def test_pq_encode_and_decode_are_bounded_for_any_input(x: np.ndarray) -> None:
    pq = eotf_inverse_st2084(x)
    nits = eotf_st2084(x)
    assert pq.shape == nits.shape == x.shape
    assert np.all((pq >= 0.0) & (pq <= 1.0))
    assert np.all((nits >= 0.0) & (nits <= PQ_PEAK_NITS))


@given(ANY_FLOAT, ANY_FLOAT)
@example(0.0, 1.084235963325697e-104)  # the encoding's ratio, written as a quotient, fell 1e-14 below PQ(0)
def test_pq_is_monotonic_both_ways(a: float, b: float) -> None:
    assume(not (np.isnan(a) or np.isnan(b)))
    assert_monotonic(eotf_inverse_st2084, a, b)
    assert_monotonic(eotf_st2084, a, b)


@given(arrays_of(st.floats(1e-4, PQ_PEAK_NITS)), arrays_of(UNIT))
def test_pq_round_trips(nits: np.ndarray, signal: np.ndarray) -> None:
    np.testing.assert_allclose(eotf_st2084(eotf_inverse_st2084(nits)), nits, rtol=1e-9)
    # PQ(0 cd/m²) = c1^m2 = 7.3e-7, so signals below it come back as that floor.
    np.testing.assert_allclose(eotf_inverse_st2084(eotf_st2084(signal)), signal, atol=1e-6)


# -- SDR transfers ----------------------------------------------------------------------------------

SDR_PAIRS = [(eotf_bt1886, eotf_inverse_bt1886), (eotf_srgb, eotf_inverse_srgb)]
SDR_EOTFS: list[Callable[[np.ndarray], np.ndarray]] = [
    eotf_bt1886,
    eotf_srgb,
    lambda v: eotf_gamma(v, 2.2),
    lambda v: eotf_gamma(v, 2.8),
]


@pytest.mark.parametrize(
    "eotf",
    [*SDR_EOTFS, eotf_inverse_bt1886, eotf_inverse_srgb],
    ids=["bt1886", "srgb", "gamma22", "gamma28", "inverse_bt1886", "inverse_srgb"],
)
@given(x=arrays_of(ANY_FLOAT), a=ANY_FLOAT, b=ANY_FLOAT)
def test_sdr_transfers_are_bounded_and_monotonic(
    eotf: Callable[[np.ndarray], np.ndarray], x: np.ndarray, a: float, b: float
) -> None:
    """Relative light in [0, 1] for any input (NaN as 0, as PQ does), never decreasing."""
    y = eotf(x)
    assert y.shape == x.shape and np.all((y >= 0.0) & (y <= 1.0))
    assume(not (np.isnan(a) or np.isnan(b)))
    assert_monotonic(eotf, a, b)


@pytest.mark.parametrize(("forward", "inverse"), SDR_PAIRS)
@given(v=arrays_of(UNIT))
def test_sdr_transfers_round_trip(
    forward: Callable[[np.ndarray], np.ndarray], inverse: Callable[[np.ndarray], np.ndarray], v: np.ndarray
) -> None:
    # IEC 61966-2-1 prints both knees rounded (0.04045 and 0.0031308 = 0.04045 / 12.92 - 5e-12), so
    # right at the knee one side takes the linear branch and the other the power branch: 3e-8 apart.
    np.testing.assert_allclose(inverse(forward(v)), v, atol=5e-8)
    np.testing.assert_allclose(forward(inverse(v)), v, atol=5e-8)


# -- primaries --------------------------------------------------------------------------------------

KNOWN = [PRIMARIES_BT709, PRIMARIES_BT2020, PRIMARIES_SMPTE170M, PRIMARIES_DISPLAY_P3]


@st.composite
def chromaticity_sets(draw: st.DrawFn) -> Chromaticities:
    """A real display's primaries moved by up to 0.02 in x and y (still a triangle around the white point)."""
    base = draw(st.sampled_from(KNOWN))
    nudge = st.floats(-0.02, 0.02)
    red, green, blue, white = base
    return (
        (red[0] + draw(nudge), red[1] + draw(nudge)),
        (green[0] + draw(nudge), green[1] + draw(nudge)),
        (blue[0] + draw(nudge), blue[1] + draw(nudge)),
        white,
    )


@given(chromaticity_sets(), chromaticity_sets())
def test_gamut_matrices_invert_and_keep_white(source: Chromaticities, target: Chromaticities) -> None:
    there = matrix_rgb_to_rgb(source, target)
    back = matrix_rgb_to_rgb(target, source)
    np.testing.assert_allclose(back @ there, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(there @ np.ones(3), np.ones(3), atol=1e-12)  # shared D65 white stays white
    assert sum(luma_coefficients(source)) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(matrix_rgb_to_xyz(source) @ np.ones(3), matrix_rgb_to_xyz(target) @ np.ones(3))


@given(chromaticity_sets())
def test_same_primaries_convert_with_the_exact_identity(primaries: Chromaticities) -> None:
    """No-op conversions must not invent light: a 1e-17 off-diagonal turns black-red edges negative."""
    assert np.array_equal(matrix_rgb_to_rgb(primaries, primaries), np.eye(3))


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.just(3)), elements=UNIT))
def test_bt709_fits_inside_bt2020_and_comes_back(rgb: np.ndarray) -> None:
    """BT.2087: the BT.709 cube maps into the BT.2020 cube (no negative, nothing over 1) and back."""
    wide = rgb @ matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020).T
    assert np.all(wide >= -1e-12) and np.all(wide <= 1.0 + 1e-12)
    np.testing.assert_allclose(wide @ matrix_rgb_to_rgb(PRIMARIES_BT2020, PRIMARIES_BT709).T, rgb, atol=1e-12)


# -- Y'CbCr -----------------------------------------------------------------------------------------

MATRICES = [m for m in Matrix if m not in (Matrix.RGB, Matrix.UNSPECIFIED)]
RGB_UNIT = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 4), st.just(3)), elements=UNIT)


@pytest.mark.parametrize("matrix", MATRICES, ids=lambda m: m.name)
@given(rgb=RGB_UNIT)
def test_ycbcr_is_in_range_and_round_trips(matrix: Matrix, rgb: np.ndarray) -> None:
    luma = luma_for(matrix)
    ycc = rgb_to_ycbcr(rgb, luma)
    eps = 1e-12
    assert np.all((ycc[..., 0] >= -eps) & (ycc[..., 0] <= 1 + eps))
    assert np.all(np.abs(ycc[..., 1:]) <= 0.5 + eps)
    np.testing.assert_allclose(ycbcr_to_rgb(ycc, luma), rgb, atol=1e-12)


@pytest.mark.parametrize("rng", [Range.MPEG, Range.JPEG], ids=lambda r: r.name)
@given(bits=st.sampled_from([8, 10, 12, 16]), data=st.data())
def test_quantisation_is_within_half_a_step_and_clipped(rng: Range, bits: int, data: st.DataObject) -> None:
    ycc = rgb_to_ycbcr(data.draw(RGB_UNIT), luma_for(Matrix.BT2020_NCL))
    codes = quantize(ycc, bits, rng)
    back = dequantize(codes, bits, rng)
    full = (1 << bits) - 1
    y_step, c_step = (
        (1.0 / full, 1.0 / full) if rng is Range.JPEG else (1 / (219 << (bits - 8)), 1 / (224 << (bits - 8)))
    )
    assert np.all(np.abs(back[..., 0] - ycc[..., 0]) <= y_step / 2 + 1e-12)
    # Full-range chroma has no code for +0.5 (512 + 511.5 rounds to 1024, clipped to 1023): one step there.
    assert np.all(np.abs(back[..., 1:] - ycc[..., 1:]) <= c_step + 1e-12)
    hostile = data.draw(hnp.arrays(np.float64, (2, 3), elements=st.floats(-1e6, 1e6)))
    codes = quantize(hostile, bits, rng)
    assert codes.min() >= 0 and codes.max() <= full


@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 4)).map(lambda s: (2 * s[0], 2 * s[1])),
        elements=st.floats(-1e3, 1e3),
    )
)
def test_chroma_subsampling_is_a_convex_average(plane: np.ndarray) -> None:
    """Every 4:2:0 sample is a weighted mean of its neighbours: no ringing, constants stay constant."""
    sub = subsample_420_left(plane)
    assert sub.shape == (plane.shape[0] // 2, plane.shape[1] // 2)
    tol = 1e-9 * max(1.0, float(np.abs(plane).max()))
    assert sub.min() >= plane.min() - tol and sub.max() <= plane.max() + tol
    np.testing.assert_allclose(subsample_420_left(np.full_like(plane, 7.0)), 7.0)


# -- inverse tone curves (classical operators) ------------------------------------------------------


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_bt2446a_luma_expansion_is_monotonic_and_bounded(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    y_lo, y_hi = bt2446a_expand_luma(lo), bt2446a_expand_luma(hi)
    assert 0.0 <= y_lo <= y_hi <= BT2446A_PEAK_NITS


@given(st.floats(0.0, 1.0), st.floats(1.0, 1000.0))
def test_reinhard_inverse_undoes_reinhard(l_display: float, l_white: float) -> None:
    """Relative accuracy everywhere, dark pixels under a large white point included."""
    l_scene = reinhard_inverse(l_display, l_white)
    assert 0.0 <= l_scene <= l_white * (1 + 1e-12)
    forward = l_scene * (1.0 + l_scene / l_white**2) / (1.0 + l_scene)
    assert forward == pytest.approx(l_display, rel=1e-12, abs=1e-300)


@given(st.floats(allow_nan=True), st.floats(allow_nan=True), st.floats(1.0, 1000.0))
def test_reinhard_inverse_is_monotonic_and_bounded_for_any_input(a: float, b: float, l_white: float) -> None:
    y_a, y_b = reinhard_inverse(a, l_white), reinhard_inverse(b, l_white)
    assert 0.0 <= y_a <= l_white * (1 + 1e-12) and 0.0 <= y_b <= l_white * (1 + 1e-12)
    assume(not (np.isnan(a) or np.isnan(b)))
    if a <= b:
        assert y_a <= y_b
