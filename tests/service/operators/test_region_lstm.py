"""The ``region_lstm`` operator: listed without a model and failing clearly, and (with a fake engine in place
of LiteRT, so no trained model is needed) its modes, network sizes, the anchor it hands the network, layout,
batch independence, peak and the ``bt2408`` identity of a zero offset."""

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from service.colour.description import ColourDescription
from service.errors import EngineError
from service.operators import available_operators, create_operator
from service.operators.region_lstm import RegionLSTM, anchor_pq_lut
from service.timing import StageClock

MODES = ("fast", "quality")
BATCH_ATOL_NITS = 1e-3
BT2408_RTOL = 1e-3
"""A zero offset against ``bt2408``, above the anchor's logit clipping (0.05 cd/m²)."""


class FakeEngine:
    """In place of the LiteRT engine: records what it is given, returns offsets of each frame's own codes."""

    def __init__(self, gain: float = 0.5, **meta: Any) -> None:
        self.meta: dict[str, Any] = {"stride": 4, "sparam_size": 256, "peak_nits": 1000.0} | meta
        self.gain = gain
        self.calls: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]] = []

    def run(
        self, frames: npt.NDArray[np.uint8], anchor: npt.NDArray[np.float32], clock: StageClock
    ) -> npt.NDArray[np.float32]:
        self.calls.append((frames, anchor))
        clock.lap("backbone")
        offsets = self.gain * (frames.astype(np.float32) / 255.0 - 0.5)
        clock.lap("head")
        return offsets.astype(np.float32)


def _frames(n: int, h: int, w: int) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(h * w + n).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_listed_with_its_parameters_even_without_a_model() -> None:
    infos = {info.name: info for info in available_operators()}
    params = {p.name: p for p in infos["region_lstm"].params}
    assert list(params) == ["peak_nits", "mode"]
    assert params["mode"].choices == ("fast", "quality") and params["mode"].default == "fast"


def test_missing_model_fails_with_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITM_REGION_LSTM_DIR", str(tmp_path))
    with pytest.raises(
        EngineError, match=r"region_lstm is not available: .*models.export --model region_lstm"
    ):
        create_operator("region_lstm", peak_nits=1000.0)
    with pytest.raises(ValueError, match="mode 'slow' is not known"):
        create_operator("region_lstm", mode="slow")  # refused before the model is looked for


def test_modes_set_the_network_size() -> None:
    fast = RegionLSTM(1000.0, "fast", engine=FakeEngine())
    assert fast.name == "region_lstm" and fast.params == {"peak_nits": 1000.0, "mode": "fast"}
    assert fast.network_size(1080, 1920) == (288, 512) and fast.network_size(360, 640) == (288, 512)
    quality = RegionLSTM(1000.0, "quality", engine=FakeEngine())
    assert quality.stride == 4 and quality.network_size(1080, 1920) == (1080, 1920)
    assert quality.network_size(45, 77) == (44, 76)  # the nearest multiples of the stride
    assert RegionLSTM(1000.0, "fast", engine=FakeEngine(fast_long_side=256)).network_size(1080, 1920) == (
        144,
        256,
    )


@pytest.mark.parametrize("mode", MODES)
def test_network_reads_its_size_and_anchor_and_output_keeps_the_frame(mode: str) -> None:
    engine = FakeEngine()
    op = RegionLSTM(1000.0, mode, engine=engine)
    frames = _frames(3, 360, 640)
    colour = ColourDescription.video()
    batch = op(frames, colour)
    small, anchor = engine.calls[0]
    assert small.shape == (3, *op.network_size(360, 640), 3)
    np.testing.assert_array_equal(anchor, anchor_pq_lut(colour)[small])
    assert batch.shape == frames.shape and batch.dtype == np.float32
    assert np.isfinite(batch).all() and batch.min() >= 0.0 and batch.max() <= 1000.0
    assert set(op.clock.seconds) >= {"preprocess", "backbone", "head", "postprocess"}
    for i in range(3):
        np.testing.assert_allclose(batch[i], op(frames[i : i + 1], colour)[0], atol=BATCH_ATOL_NITS)
    low = RegionLSTM(300.0, mode, engine=FakeEngine())(frames, colour)
    assert low.max() <= 300.0 * (1 + 1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_zero_offsets_are_bt2408_at_every_size(mode: str) -> None:
    op = RegionLSTM(1000.0, mode, engine=FakeEngine(gain=0.0))
    colour = ColourDescription.still()
    for h, w in ((360, 640), (45, 77), (5, 5)):
        frames = _frames(1, h, w)
        got = op(frames, colour)
        ref = create_operator("bt2408", peak_nits=1000.0)(frames, colour)
        assert got.shape == (1, h, w, 3)
        visible = ref > 0.05
        np.testing.assert_allclose(got[visible], ref[visible], rtol=BT2408_RTOL)
