"""The learned ``mqn`` operator: registry, layout, batch independence, the absolute convention."""


import numpy as np
import pytest

from service.operators import ColourDescription, create_operator
from tests.models.markers import needs_artifacts, needs_litert

pytestmark = [pytest.mark.litert, needs_litert, needs_artifacts]

MODES = ("fast", "quality")
BATCH_ATOL_NITS = 1e-3


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth synthetic scenes (gradients + a bright window), one per frame, all different."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        tilt = rng.uniform(0.2, 0.8, 3)
        img = 40 + 150 * (tilt[0] * x / w + (1 - tilt[0]) * y / h)[..., None] * tilt[None, None, :]
        img[h // 4 : h // 2, w // 3 : w // 2] = 255
        out[i] = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    return out


def test_registry_creates_mqn_with_modes() -> None:
    op = create_operator("mqn", peak_nits=1000.0, mode="quality")
    assert op.name == "mqn" and op.params == {"peak_nits": 1000.0, "mode": "quality"}
    with pytest.raises(ValueError, match="mode"):
        create_operator("mqn", peak_nits=1000.0, mode="turbo")


@pytest.mark.parametrize("mode", MODES)
def test_output_layout_and_batch_independence(mode: str) -> None:
    op = create_operator("mqn", peak_nits=1000.0, mode=mode)
    frames = _frames(3, 360, 640)
    colour = ColourDescription.video()
    batch = op(frames, colour)
    assert batch.shape == (3, 360, 640, 3) and batch.dtype == np.float32
    assert np.isfinite(batch).all() and batch.min() >= 0.0 and batch.max() <= 1000.0
    for i in range(3):
        alone = op(frames[i : i + 1], colour)[0]
        np.testing.assert_allclose(batch[i], alone, atol=BATCH_ATOL_NITS)


def test_odd_sizes_are_padded_to_the_stride() -> None:
    op = create_operator("mqn", peak_nits=1000.0, mode="quality")
    out = op(_frames(1, 45, 77), ColourDescription.still())
    assert out.shape == (1, 45, 77, 3)


@pytest.mark.parametrize("mode", MODES)
def test_absolute_convention_white_and_midtones(mode: str) -> None:
    """A grey-card frame: mid-tones stay on BT.2408 (SDR code -> 203 cd/m² white), white lands near 203.

    Diffuse white here is a large patch at code 235 (not clipped), the way a white card is exposed; the
    model may lift it somewhat (it cannot know it is not a light), but not towards the peak.
    """
    bt2408 = create_operator("bt2408", peak_nits=1000.0)
    op = create_operator("mqn", peak_nits=1000.0, mode=mode)
    frame = np.full((1, 256, 384, 3), 118, np.uint8)  # ~18% grey under BT.1886
    frame[:, 64:192, 64:192] = 235
    colour = ColourDescription.video()
    out, ref = op(frame, colour)[0], bt2408(frame, colour)[0]
    grey = out[200:, 250:].mean() / ref[200:, 250:].mean()
    white = float(out[96:160, 96:160].mean())
    assert 0.75 <= grey <= 1.33
    assert 203 * 0.75 <= white <= 203 * 2.5
