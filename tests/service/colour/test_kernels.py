import numpy as np
import pytest

from service.colour.kernels import (
    nits_to_yuv420p10,
    nits_to_yuv420p10_light,
    sdr_to_linear,
)
from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.tags import Range
from service.colour.ycbcr import (
    LUMA_BT2020,
    quantize,
    rgb_to_ycbcr,
    subsample_420_left,
)


def reference_planes(nits):
    """The slow, obviously-correct path: PQ, BT.2020 NCL, left-sited 4:2:0, 10-bit narrow range."""
    pq = eotf_inverse_st2084(nits.astype(np.float64))
    y = quantize(rgb_to_ycbcr(pq, LUMA_BT2020), 10, Range.MPEG)[..., 0]
    sub = np.stack([subsample_420_left(pq[..., c]) for c in range(3)], axis=-1)
    c = quantize(rgb_to_ycbcr(sub, LUMA_BT2020), 10, Range.MPEG)
    return y, c[..., 1], c[..., 2]


def natural_frame(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(h, w, 3)), axis=0), axis=1)
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    return (smooth**3 * 1500.0).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_reference_path(seed):
    frame = natural_frame(seed=seed)
    got = nits_to_yuv420p10(frame)
    for plane, want in zip(got, reference_planes(frame), strict=True):
        diff = np.abs(plane.astype(int) - want.astype(int))
        assert diff.max() <= 1, "never more than one code off"
        assert (diff > 0).mean() < 1e-3, "and off only at rounding ties"


@pytest.mark.parametrize(
    ("nits", "code"), [(0.0, 64), (100.0, 509), (203.0, 573), (1000.0, 723), (10000.0, 940)]
)
def test_flat_grey_code_values(nits, code):
    y, u, v = nits_to_yuv420p10(np.full((4, 6, 3), nits, np.float32))
    assert np.all(y == code) and np.all(u == 512) and np.all(v == 512)


def test_hostile_values_are_clamped():
    frame = np.array([[[np.nan, -1.0, np.inf], [1e9, 0.0, -np.inf]]] * 2, np.float32)
    y, u, v = nits_to_yuv420p10(frame)
    assert y.min() >= 64 and y.max() <= 940 and u.max() <= 960 and v.min() >= 64


@pytest.mark.parametrize("shape", [(3, 4, 3), (4, 5, 3), (4, 4, 4)])
def test_rejects_bad_shapes(shape):
    with pytest.raises(ValueError):
        nits_to_yuv420p10(np.zeros(shape, np.float32))


def test_rejects_float64():
    with pytest.raises(ValueError, match="float32"):
        nits_to_yuv420p10(np.zeros((4, 4, 3)))


def test_writes_into_preallocated_planes():
    planes = (np.zeros((4, 4), np.uint16), np.zeros((2, 2), np.uint16), np.zeros((2, 2), np.uint16))
    out = nits_to_yuv420p10(np.full((4, 4, 3), 203.0, np.float32), planes)
    assert out[0] is planes[0] and planes[0][0, 0] == 573


def test_sdr_to_linear_applies_table_then_matrix():
    frames = np.array([[[[0, 128, 255]]]], np.uint8)
    lut = np.linspace(0, 1, 256, dtype=np.float32)
    m = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], np.float32)
    out = sdr_to_linear(frames, lut, m)
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 128 / 255, 0.0], rtol=1e-6)


# --- the frame's light, measured by the HDR10 kernel (CTA-861.3 MaxCLL/MaxFALL inputs) ---------------------


def reference_light(nits: np.ndarray) -> tuple[float, float]:
    """Brightest and average light after 10-bit narrow-range PQ quantisation of max(R, G, B), in float64."""
    brightest = np.clip(np.nan_to_num(nits.astype(np.float64), nan=0.0, posinf=1e4).max(axis=-1), 0.0, 1e4)
    light = eotf_st2084((np.floor(64 + 876 * eotf_inverse_st2084(brightest) + 0.5) - 64) / 876)
    return float(light.max()), float(light.mean())


@pytest.mark.parametrize("scale", [1e-3, 1.0, 203.0, 1000.0, 12000.0])
def test_frame_light_matches_numpy(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 10))
    nits = (rng.random((36, 50, 3)) ** 3 * scale).astype(np.float32)
    planes, (light, average) = nits_to_yuv420p10_light(nits)
    want_light, want_average = reference_light(nits)
    assert light == pytest.approx(want_light, rel=1e-9)
    assert average == pytest.approx(want_average, rel=1e-9)
    for got, want in zip(planes, nits_to_yuv420p10(nits), strict=True):
        np.testing.assert_array_equal(got, want)  # measuring changes no code value


def test_every_code_boundary_rounds_like_the_encoder() -> None:
    # light just below and above each rounding threshold of the 10-bit code
    codes = np.arange(64, 940)
    edges = eotf_st2084((codes + 0.5 - 64) / 876)
    nits = np.stack([edges * (1 - 1e-5), edges * (1 + 1e-5)], axis=1).astype(np.float32)
    frame = np.repeat(nits.reshape(-1, 1, 1), 3, axis=2).reshape(-1, 2, 3)
    light, average = nits_to_yuv420p10_light(np.ascontiguousarray(frame))[1]
    want_light, want_average = reference_light(frame)
    assert light == pytest.approx(want_light, rel=1e-9) and average == pytest.approx(want_average, rel=1e-9)


def test_hostile_values_count_as_the_encoder_codes_them() -> None:
    frame = np.zeros((2, 4, 3), np.float32)
    frame[0, 0] = (np.nan, 5.0, -3.0)  # NaN and negative channels are black; the green decides
    frame[0, 1] = (-np.inf, np.nan, np.nan)  # all black
    frame[1, 0] = (np.inf, 0.0, 0.0)  # +inf clips to PQ 1.0: 10000 cd/m²
    light, average = nits_to_yuv420p10_light(frame)[1]
    assert light == pytest.approx(10000.0)
    assert average == pytest.approx(reference_light(np.nan_to_num(frame, nan=0.0))[1])
