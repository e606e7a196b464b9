import numpy as np
import pytest

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.tags import Range
from service.colour.ycbcr import quantize


@pytest.mark.parametrize(
    ("nits", "signal", "code10"),
    [
        # ITU-R BT.2100 / BT.2408 table values: PQ signal and 10-bit narrow-range code.
        (0.0, 0.0, 64),
        (100.0, 0.5081, 509),
        (203.0, 0.5807, 573),
        (1000.0, 0.7518, 723),
        (10000.0, 1.0, 940),
    ],
)
def test_reference_points(nits, signal, code10):
    pq = eotf_inverse_st2084(nits)
    assert pq == pytest.approx(signal, abs=5e-5)
    assert quantize(np.array([[pq, 0.0, 0.0]]), 10, Range.MPEG)[0, 0] == code10


def test_round_trip_over_the_whole_range():
    nits = np.geomspace(1e-4, 10000.0, 2001)
    np.testing.assert_allclose(eotf_st2084(eotf_inverse_st2084(nits)), nits, rtol=1e-9)
    signal = np.linspace(0.0, 1.0, 1001)
    # PQ(0 cd/m²) is c1^m2 = 7.3e-7, not 0: the curve does not pass through the origin.
    np.testing.assert_allclose(eotf_inverse_st2084(eotf_st2084(signal)), signal, atol=1e-6)


def test_monotonic_and_bounded_with_hostile_values():
    x = np.array([-5.0, np.nan, 0.0, 1e-9, 50.0, 1e4, 2e4, np.inf])
    pq = eotf_inverse_st2084(x)
    assert np.all((pq >= 0) & (pq <= 1))
    assert pq[0] == pq[1] == eotf_inverse_st2084(0.0) < 1e-6
    assert pq[-1] == pq[-2] == 1.0
    assert np.all(np.diff(eotf_inverse_st2084(np.linspace(0, 10000, 5000))) > 0)


def test_keeps_shape():
    assert eotf_inverse_st2084(np.zeros((2, 3, 4, 3))).shape == (2, 3, 4, 3)
    assert eotf_st2084(np.zeros((5, 1))).shape == (5, 1)
