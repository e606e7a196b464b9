import numpy as np
import pytest

from service.colour.sdr_transfer import (
    decode_lut_u8,
    eotf_bt1886,
    eotf_inverse_bt1886,
    eotf_inverse_srgb,
    eotf_srgb,
    sdr_eotf,
)
from service.colour.tags import Transfer


def test_bt1886_is_a_pure_2_4_power():
    assert eotf_bt1886(0.5) == pytest.approx(0.5**2.4)
    assert eotf_bt1886(1.0) == 1.0 and eotf_bt1886(0.0) == 0.0


def test_srgb_reference_values():
    # IEC 61966-2-1: the linear toe below 0.04045 and 0.5 -> 0.2140.
    assert eotf_srgb(0.04045) == pytest.approx(0.04045 / 12.92)
    assert eotf_srgb(0.5) == pytest.approx(0.21404, abs=1e-5)
    assert eotf_srgb(1.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("forward", "inverse"), [(eotf_bt1886, eotf_inverse_bt1886), (eotf_srgb, eotf_inverse_srgb)]
)
def test_round_trips(forward, inverse):
    v = np.linspace(0, 1, 513)
    np.testing.assert_allclose(inverse(forward(v)), v, atol=1e-12)


@pytest.mark.parametrize(
    "trc",
    [
        t
        for t in Transfer
        if t not in (Transfer.SMPTE2084, Transfer.ARIB_STD_B67, Transfer.LINEAR, Transfer.UNSPECIFIED)
    ],
)
def test_every_sdr_tag_has_a_monotonic_table(trc):
    lut = decode_lut_u8(trc)
    assert lut.shape == (256,) and lut[0] == 0.0 and lut[-1] == pytest.approx(1.0)
    assert np.all(np.diff(lut) > 0)


@pytest.mark.parametrize("trc", [Transfer.SMPTE2084, Transfer.ARIB_STD_B67, Transfer.LINEAR])
def test_non_sdr_transfers_are_refused(trc):
    with pytest.raises(ValueError, match="not an SDR"):
        sdr_eotf(trc)
