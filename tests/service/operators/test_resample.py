"""The network's view of a frame: the Numba resampler must be Pillow's BILINEAR, bit for bit."""

import numpy as np
import pytest
from PIL import Image

from service.operators.mqn import processing_size
from service.operators.resample import resize_bilinear


@pytest.mark.parametrize(
    ("h", "w", "long_side", "expected"),
    [
        (1080, 1920, 256, (128, 256)),
        (720, 1280, 256, (128, 256)),
        (480, 640, 512, (384, 512)),
        (20, 70, 256, (64, 256)),
    ],
)
def test_processing_size_is_stride_aligned_with_long_side(
    h: int, w: int, long_side: int, expected: tuple[int, int]
) -> None:
    assert processing_size(h, w, long_side) == expected


@pytest.mark.parametrize(
    ("h", "w", "ph", "pw"),
    [(1080, 1920, 160, 256), (720, 1280, 96, 192), (720, 1280, 288, 512), (37, 53, 32, 32), (40, 60, 64, 96)],
)
def test_resize_bilinear_is_bit_identical_to_pillow(h: int, w: int, ph: int, pw: int) -> None:
    frames = np.random.default_rng(3).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    expected = np.stack(
        [np.asarray(Image.fromarray(f).resize((pw, ph), Image.Resampling.BILINEAR)) for f in frames]
    )
    np.testing.assert_array_equal(resize_bilinear(frames, ph, pw), expected)
