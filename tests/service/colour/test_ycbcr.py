import numpy as np
import pytest

from service.colour.tags import Matrix, Range
from service.colour.ycbcr import (
    LUMA_BT2020,
    dequantize,
    luma_for,
    quantize,
    rgb_to_ycbcr,
    subsample_420_left,
    upsample_420_nearest,
    ycbcr_to_rgb,
)


def test_bt2020_luma_coefficients_are_as_published():
    assert LUMA_BT2020 == (0.2627, 0.6780, 0.0593)


def test_bt2020_chroma_divisors():
    # BT.2020 table 4: Cb = (B' - Y') / 1.8814, Cr = (R' - Y') / 1.4746.
    ycc = rgb_to_ycbcr(np.array([0.3, 0.6, 0.9]), LUMA_BT2020)
    y = 0.2627 * 0.3 + 0.6780 * 0.6 + 0.0593 * 0.9
    np.testing.assert_allclose(ycc, [y, (0.9 - y) / 1.8814, (0.3 - y) / 1.4746], atol=1e-12)


@pytest.mark.parametrize("matrix", [m for m in Matrix if m not in (Matrix.RGB, Matrix.UNSPECIFIED)])
def test_round_trip_every_matrix(matrix):
    rgb = np.random.default_rng(1).random((7, 5, 3))
    luma = luma_for(matrix)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb, luma), luma), rgb, atol=1e-12)


@pytest.mark.parametrize(
    ("bits", "rng", "black", "white", "mid_chroma"),
    [(10, Range.MPEG, 64, 940, 512), (8, Range.MPEG, 16, 235, 128), (10, Range.JPEG, 0, 1023, 512)],
)
def test_quantisation_ranges(bits, rng, black, white, mid_chroma):
    codes = quantize(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), bits, rng)
    assert codes[0, 0] == black and codes[1, 0] == white and codes[0, 1] == mid_chroma
    np.testing.assert_allclose(dequantize(codes, bits, rng)[:, 0], [0.0, 1.0])


def test_narrow_range_chroma_extremes():
    codes = quantize(np.array([[0.5, -0.5, 0.5]]), 10, Range.MPEG)
    assert codes.tolist() == [[502, 64, 960]]


def test_left_sited_subsampling_of_a_ramp_is_exact():
    ramp = np.tile(np.arange(8.0), (4, 1))
    sub = subsample_420_left(ramp)
    # Co-sited with even columns: a linear ramp is sampled at 0, 2, 4, 6 (edge sample replicated).
    np.testing.assert_allclose(sub, np.tile([0.25, 2.0, 4.0, 6.0], (2, 1)))


def test_nearest_upsampling_shape():
    assert upsample_420_nearest(np.zeros((2, 3))).shape == (4, 6)


def test_unspecified_matrix_is_the_callers_job():
    with pytest.raises(ValueError, match="not supported"):
        luma_for(Matrix.UNSPECIFIED)
