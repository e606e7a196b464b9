"""The ``singlehdr`` operator: listed without a model and failing clearly, its offset upsampling, and (with a
smoke-trained model) layout, modes, batch independence, sizes and peak."""

from pathlib import Path

import numpy as np
import pytest

from service.colour.description import ColourDescription
from service.errors import EngineError
from service.operators import available_operators, create_operator
from service.operators.learned import upsample_bilinear
from tests.models.singlehdr_smoke import needs_smoke_model, singlehdr_dir

__all__ = ["singlehdr_dir"]

BATCH_ATOL_NITS = 1e-3


def test_listed_with_its_parameters_even_without_a_model() -> None:
    infos = {info.name: info for info in available_operators()}
    params = {p.name: p for p in infos["singlehdr"].params}
    assert list(params) == ["peak_nits", "mode"]
    assert params["mode"].choices == ("fast", "quality") and params["mode"].default == "fast"


def test_missing_model_fails_with_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITM_SINGLEHDR_DIR", str(tmp_path))
    with pytest.raises(EngineError, match=r"singlehdr is not available: .*models.export --model singlehdr"):
        create_operator("singlehdr", peak_nits=1000.0)


def test_upsampling_keeps_planes_and_matches_half_pixel_bilinear() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((2, 4, 6, 3), 1.5, np.float32)
    np.testing.assert_allclose(upsample_bilinear(flat, 9, 13), 1.5, atol=1e-6)
    # A linear ramp along x stays linear inside (half-pixel centres), clamped at the edges.
    ramp = np.broadcast_to(np.arange(4, dtype=np.float32)[None, None, :, None], (1, 3, 4, 1)).copy()
    up = upsample_bilinear(ramp, 3, 8)[0, 0, :, 0]
    np.testing.assert_allclose(up, [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0], atol=1e-6)
    same = rng.random((1, 5, 7, 3), np.float32)
    np.testing.assert_allclose(upsample_bilinear(same, 5, 7), same, atol=1e-6)


@needs_smoke_model
def test_layout_modes_batch_independence_and_peak(singlehdr_dir: Path) -> None:
    frames = np.random.default_rng(2).integers(0, 256, (3, 360, 640, 3), dtype=np.uint8)
    colour = ColourDescription.video()
    fast = create_operator("singlehdr", peak_nits=1000.0)
    assert fast.name == "singlehdr" and fast.params == {"peak_nits": 1000.0, "mode": "fast"}
    assert fast.network_size(1080, 1920) == (288, 512) and fast.network_size(360, 640) == (288, 512)
    quality = create_operator("singlehdr", peak_nits=1000.0, mode="quality")
    assert quality.network_size(1080, 1920) == (1080, 1920)
    ph, pw = quality.network_size(45, 77)  # the nearest multiples of the U-Nets' stride
    assert ph % quality.stride == pw % quality.stride == 0
    assert abs(ph - 45) <= quality.stride / 2 and abs(pw - 77) <= quality.stride / 2
    for op in (fast, quality):
        batch = op(frames, colour)
        assert batch.shape == frames.shape and batch.dtype == np.float32
        assert np.isfinite(batch).all() and batch.min() >= 0.0 and batch.max() <= 1000.0
        for i in range(3):
            np.testing.assert_allclose(batch[i], op(frames[i : i + 1], colour)[0], atol=BATCH_ATOL_NITS)
        assert set(op.clock.seconds) >= {"preprocess", "backbone", "head"}
    low = create_operator("singlehdr", peak_nits=300.0)(frames, colour)
    assert low.max() <= 300.0 * (1 + 1e-6)
    with pytest.raises(ValueError, match="mode 'slow'"):
        create_operator("singlehdr", mode="slow")


@needs_smoke_model
def test_odd_and_tiny_sizes_keep_their_shape(singlehdr_dir: Path) -> None:
    for mode in ("fast", "quality"):
        op = create_operator("singlehdr", peak_nits=1000.0, mode=mode)
        for h, w in ((45, 77), (16, 64), (300, 16), (5, 5)):
            frames = np.random.default_rng(h).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
            out = op(frames, ColourDescription.still())
            assert out.shape == (1, h, w, 3) and np.isfinite(out).all()
