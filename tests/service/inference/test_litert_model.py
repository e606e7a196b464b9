"""LiteRTModel, the generic runner: named inputs, per-thread interpreters, shape cache, clear errors."""

import threading
from pathlib import Path

import numpy as np
import pytest

from service.errors import EngineError
from tests.models.expandnet_smoke import expandnet_dir, needs_smoke_model

pytestmark = [pytest.mark.litert, needs_smoke_model]
__all__ = ["expandnet_dir"]


def _inputs(h: int, w: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(h * w)
    return {
        "frame": rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8),
        "global_view": rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8),
    }


def test_threads_get_their_own_interpreters_and_shapes_are_cached(expandnet_dir: Path) -> None:
    from service.inference.engine import LiteRTModel

    model = LiteRTModel(expandnet_dir / "expandnet_features_int8.tflite", num_threads=1, max_shapes=2)
    first = model.run(_inputs(24, 40))
    cached = dict(model._interpreters())
    again = model.run(_inputs(24, 40))
    assert dict(model._interpreters()) == cached  # same interpreter object, not rebuilt
    np.testing.assert_array_equal(first[0], again[0])
    assert first[0].shape[:3] == (1, 24, 40)
    other: list[dict[object, object]] = []
    thread = threading.Thread(
        target=lambda: (model.run(_inputs(24, 40)), other.append(dict(model._interpreters())))
    )
    thread.start()
    thread.join()
    assert next(iter(other[0].values())) is not next(iter(cached.values()))
    for h, w in ((16, 16), (32, 48)):
        model.run(_inputs(h, w))
    assert len(model._interpreters()) == 2  # least recently used shape dropped


def test_wrong_input_names_and_missing_files_are_engine_errors(expandnet_dir: Path) -> None:
    from service.inference.engine import LiteRTModel

    model = LiteRTModel(expandnet_dir / "expandnet_features_int8.tflite", num_threads=1)
    with pytest.raises(EngineError, match="takes inputs"):
        model.run({"sdr": np.zeros((1, 8, 8, 3), np.uint8)})
    with pytest.raises(EngineError, match="missing"):
        LiteRTModel(expandnet_dir / "nope.tflite")
