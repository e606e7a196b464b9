import numpy as np
import pytest

from service.colour.curves import (
    BT2446A_HIGH,
    BT2446A_KNEE,
    BT2446A_LOW,
    bt2446a_expand_luma,
    reinhard_inverse,
)
from service.colour.description import ColourDescription
from service.colour.scaling import SDR_WHITE_NITS
from service.colour.tags import Primaries, Transfer
from service.operators import create_operator


def grey(code, n=1, h=2, w=2):
    return np.full((n, h, w, 3), code, np.uint8)


VIDEO = ColourDescription.video()


def test_bt2408_puts_white_at_203_and_follows_bt1886():
    op = create_operator("bt2408", peak_nits=1000.0)
    assert op(grey(255), VIDEO)[0, 0, 0] == pytest.approx([SDR_WHITE_NITS] * 3, rel=1e-5)
    assert op(grey(128), VIDEO)[0, 0, 0, 0] == pytest.approx(SDR_WHITE_NITS * (128 / 255) ** 2.4, rel=1e-5)
    assert op(grey(0), VIDEO).max() == 0.0


def test_bt2408_srgb_stills():
    out = create_operator("bt2408", peak_nits=1000.0)(grey(128), ColourDescription.still())
    assert out[0, 0, 0, 0] == pytest.approx(SDR_WHITE_NITS * ((128 / 255 + 0.055) / 1.055) ** 2.4, rel=1e-5)


def test_bt2408_converts_primaries():
    red = np.zeros((1, 1, 1, 3), np.uint8)
    red[..., 0] = 255
    out = create_operator("bt2408", peak_nits=1000.0)(red, VIDEO)[0, 0, 0]
    # BT.2087: pure BT.709 red is (0.6274, 0.0691, 0.0164) in BT.2020.
    np.testing.assert_allclose(out / SDR_WHITE_NITS, [0.6274, 0.0691, 0.0164], atol=2e-4)


def test_bt2446a_exponent_is_continuous_at_the_knee():
    def exponent(coeffs):
        a, b, c = coeffs
        return a * BT2446A_KNEE**2 + b * BT2446A_KNEE + c

    assert exponent(BT2446A_LOW) == pytest.approx(exponent(BT2446A_HIGH), abs=1e-3)


@pytest.mark.parametrize(("y_sdr", "nits"), [(1.0, 1000.0), (0.5, 76.3)])
def test_bt2446a_reference_points(y_sdr, nits):
    linear = 1000.0 * (bt2446a_expand_luma(y_sdr) / 1000.0) ** 2.4
    assert linear == pytest.approx(nits, rel=2e-3)


def test_bt2446a_operator_on_grey():
    op = create_operator("bt2446a", peak_nits=1000.0)
    out = op(np.stack([grey(255)[0], grey(0)[0]]), VIDEO)
    assert out[0].mean() == pytest.approx(1000.0, rel=1e-3)
    assert out[1].max() == 0.0


def test_bt2446a_scales_with_peak():
    a = create_operator("bt2446a", peak_nits=1000.0)(grey(200), VIDEO)
    b = create_operator("bt2446a", peak_nits=2000.0)(grey(200), VIDEO)
    np.testing.assert_allclose(b, 2 * a, rtol=1e-5)


def test_inverse_reinhard_is_the_inverse_of_reinhard():
    l_white = 4.9
    for l_m in [0.0, 0.05, 0.5, 2.0, 4.9]:
        l_d = l_m * (1 + l_m / l_white**2) / (1 + l_m)
        assert reinhard_inverse(l_d, l_white) == pytest.approx(l_m, abs=1e-9)


def test_inverse_reinhard_operator_anchors():
    op = create_operator("inverse_reinhard", peak_nits=1000.0)
    assert op(grey(255), VIDEO).mean() == pytest.approx(1000.0, rel=1e-4)
    # Slope 1 at black: deep shadows sit where BT.2408 puts them.
    dark = op(grey(10), VIDEO)[0, 0, 0, 0]
    assert dark == pytest.approx(SDR_WHITE_NITS * (10 / 255) ** 2.4, rel=0.02)


def test_inverse_reinhard_rejects_inconsistent_params():
    with pytest.raises(ValueError, match="l_white"):
        create_operator("inverse_reinhard", peak_nits=1000.0, key_nits=203.0, l_white=0.5)


@pytest.mark.parametrize("name", ["bt2408", "bt2446a", "inverse_reinhard"])
def test_output_is_independent_of_batch_mates(name):
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 6, 8, 3), dtype=np.uint8)
    op = create_operator(name, peak_nits=1000.0)
    batch = op(frames, VIDEO)
    for i in range(3):
        np.testing.assert_array_equal(op(frames[i : i + 1], VIDEO)[0], batch[i])


@pytest.mark.parametrize("name", ["bt2408", "bt2446a", "inverse_reinhard"])
def test_monotonic_in_grey_level_and_bounded_by_peak(name):
    levels = np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(3, axis=3)
    out = create_operator(name, peak_nits=1000.0)(levels, VIDEO)[0, 0, :, 1]
    assert np.all(np.diff(out) >= 0) and out.max() <= 1000.0 * 1.001


def test_already_hdr_input_is_refused():
    with pytest.raises(ValueError, match="already HDR"):
        ColourDescription(Transfer.SMPTE2084, Primaries.BT2020)


def test_bad_frames_are_refused():
    op = create_operator("bt2408", peak_nits=1000.0)
    with pytest.raises(ValueError, match="uint8"):
        op(np.zeros((1, 2, 2, 3), np.float32), VIDEO)
    with pytest.raises(ValueError, match="N x H x W x 3"):
        op(np.zeros((2, 2, 3), np.uint8), VIDEO)


def bt2446a_reference(frames):
    """BT.2446-1 Method A inverse written straight from the standard, float64, no tables."""
    op = create_operator("bt2408", peak_nits=1000.0)
    rgb = np.clip(op(frames, VIDEO).astype(np.float64) / SDR_WHITE_NITS, 0, 1) ** (1 / 2.4)
    y = rgb @ np.array([0.2627, 0.6780, 0.0593])
    ypp = 255.0 * y
    a, b, c = np.where(ypp[..., None] <= 70, BT2446A_LOW, BT2446A_HIGH).transpose(3, 0, 1, 2)
    y_hdr = np.where(ypp > 0, ypp ** (a * ypp**2 + b * ypp + c), 0.0)
    scale = np.where(y > 0, 1.075 * y_hdr / np.where(y > 0, y, 1), 1.0)
    cb = scale * (rgb[..., 2] - y) / 1.8814
    cr = scale * (rgb[..., 0] - y) / 1.4746
    r = np.maximum(y_hdr + 1.4746 * cr, 0)
    bl = np.maximum(y_hdr + 1.8814 * cb, 0)
    g = np.maximum((y_hdr - 0.2627 * r - 0.0593 * bl) / 0.6780, 0)
    return 1000.0 * (np.stack([r, g, bl], axis=-1) / 1000.0) ** 2.4


def test_bt2446a_tables_match_the_standard_within_a_tenth_of_a_code():
    from service.colour.pq import eotf_inverse_st2084

    frames = np.random.default_rng(7).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    got = create_operator("bt2446a", peak_nits=1000.0)(frames, VIDEO)
    want = bt2446a_reference(frames)
    assert np.abs(eotf_inverse_st2084(got) - eotf_inverse_st2084(want)).max() < 0.1 / 876
