"""Fast-mode pieces that need no model: processing size, guided gain-map fit, box filter."""

import numpy as np
import pytest
from PIL import Image

from service.colour.pq import eotf_st2084
from service.operators.mqn import (
    GAIN_EPS_NITS,
    _box,
    _gain_and_guide,
    guided_coefficients,
    processing_size,
    resize_bilinear,
)

GAIN_ATOL = 1e-4


@pytest.mark.parametrize(
    ("h", "w", "expected"), [(1080, 1920, (224, 384)), (720, 1280, (224, 384)), (480, 640, (288, 384))]
)
def test_processing_size_is_stride_aligned_with_long_side(h: int, w: int, expected: tuple[int, int]) -> None:
    assert processing_size(h, w, 384) == expected


def test_box_matches_a_direct_window_mean() -> None:
    x = np.random.default_rng(0).random((2, 9, 11, 3), np.float32)
    pad = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    direct = np.empty_like(x)
    for i in range(9):
        for j in range(11):
            direct[:, i, j] = pad[:, i : i + 5, j : j + 5].mean(axis=(1, 2))
    np.testing.assert_allclose(_box(x, 2), direct, atol=1e-5)


def test_guided_fit_reproduces_a_gain_that_is_affine_in_the_guide() -> None:
    guide = np.random.default_rng(1).random((1, 16, 20, 1), np.float32)
    gain = np.concatenate([1.0 + 2.0 * guide, np.full_like(guide, 1.5), 3.0 - guide], axis=-1)
    a, b = guided_coefficients(guide, gain, radius=2, eps=1e-8)
    np.testing.assert_allclose(a * guide + b, gain, atol=5e-3)
    a, b = guided_coefficients(guide, np.full((1, 16, 20, 3), 2.0, np.float32))
    np.testing.assert_allclose(a * guide + b, 2.0, atol=GAIN_ATOL)


@pytest.mark.parametrize(
    ("h", "w", "ph", "pw"), [(1080, 1920, 224, 384), (720, 1280, 224, 384), (37, 53, 32, 32)]
)
def test_resize_bilinear_is_bit_identical_to_pillow(h: int, w: int, ph: int, pw: int) -> None:
    frames = np.random.default_rng(3).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    expected = np.stack(
        [np.asarray(Image.fromarray(f).resize((pw, ph), Image.Resampling.BILINEAR)) for f in frames]
    )
    np.testing.assert_array_equal(resize_bilinear(frames, ph, pw), expected)


def test_gain_and_guide_match_the_float64_eotf_and_luma() -> None:
    """The fused kernel is the gain over the BT.2408 placement, with the published ST 2084 EOTF."""
    rng = np.random.default_rng(4)
    small = rng.integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    pq = rng.uniform(-0.05, 1.05, (2, 8, 12, 3)).astype(np.float32)
    lut_nits = np.linspace(0.0, 203.0, 256, dtype=np.float32)
    gain = np.empty(small.shape, np.float32)
    guide = np.empty((2, 8, 12, 1), np.float32)
    _gain_and_guide(pq, small, lut_nits, np.float32(GAIN_EPS_NITS), gain, guide)
    pred = eotf_st2084(np.clip(pq.astype(np.float64), 0.0, 1.0))
    expected = (pred + GAIN_EPS_NITS) / (lut_nits[small].astype(np.float64) + GAIN_EPS_NITS)
    np.testing.assert_allclose(gain, expected, rtol=1e-5)
    luma = small.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722]) / 255.0
    np.testing.assert_allclose(guide[..., 0], luma, atol=1e-6)
