import numpy as np
import pytest

from service.colour.primaries import (
    PRIMARIES_BT709,
    PRIMARIES_BT2020,
    chromaticities,
    luma_coefficients,
    matrix_rgb_to_rgb,
    matrix_rgb_to_xyz,
)
from service.colour.tags import Primaries
from service.colour.ycbcr import LUMA_BT709, LUMA_BT2020

# ITU-R BT.2087-0 clause 2, the published BT.709 -> BT.2020 matrix (4 decimals).
BT2087 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def test_bt709_to_bt2020_matches_bt2087():
    np.testing.assert_allclose(matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020), BT2087, atol=5e-5)


def test_white_maps_to_white():
    m = matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020)
    np.testing.assert_allclose(m @ np.ones(3), np.ones(3), atol=1e-12)


@pytest.mark.parametrize(
    ("primaries", "luma"), [(PRIMARIES_BT709, LUMA_BT709), (PRIMARIES_BT2020, LUMA_BT2020)]
)
def test_luma_coefficients_are_the_y_row(primaries, luma):
    np.testing.assert_allclose(luma_coefficients(primaries), luma, atol=5e-5)


def test_bt709_xyz_matrix():
    # ITU-R BT.709 derived NPM (SMPTE RP 177), first row.
    np.testing.assert_allclose(matrix_rgb_to_xyz(PRIMARIES_BT709)[0], [0.4124, 0.3576, 0.1805], atol=5e-5)


@pytest.mark.parametrize("tag", [p for p in Primaries if p is not Primaries.UNSPECIFIED])
def test_every_tag_round_trips_through_bt2020(tag):
    src = chromaticities(tag)
    there = matrix_rgb_to_rgb(src, PRIMARIES_BT2020)
    back = matrix_rgb_to_rgb(PRIMARIES_BT2020, src)
    np.testing.assert_allclose(back @ there, np.eye(3), atol=1e-12)


def test_unspecified_defaults_to_bt709():
    assert chromaticities(Primaries.UNSPECIFIED) == PRIMARIES_BT709
