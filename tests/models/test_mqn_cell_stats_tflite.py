"""A format-6 ``mqn`` (its head also reads per-cell statistics of the full-resolution frame) end to end on
LiteRT: converted as exported, fed by the engine, sliced by the operator, against the float network."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.models.markers import needs_litert, needs_tf

pytestmark = [pytest.mark.litert, pytest.mark.train, needs_litert, needs_tf]

SMALL = {
    "width": 0.35,
    "decoder_channels": [16],
    "head_channels": 8,
    "global_path": True,
    "peak_guide": True,
    "peak_ratio": 2.0,
    "cell_stats": True,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A small random format-6 model, converted as ``models.export`` converts, and its float twin."""
    from models.mqn.evaluate import FloatPredictor, keras_sequence
    from models.mqn.export import artifact_format, convert_backbone, convert_head, curves_meta
    from models.mqn.model import MQNConfig, build_mqn

    cfg = MQNConfig.from_json(SMALL)
    _, backbone, head = build_mqn(cfg)
    rng = np.random.default_rng(4)
    for layer in ("head_cells", "head_log_slopes"):  # make the cells matter to the curves
        weights = head.get_layer(layer).get_weights()
        noise = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in weights]
        head.get_layer(layer).set_weights([w + n for w, n in zip(weights, noise, strict=True)])
    out = tmp_path_factory.mktemp("format6")
    crops = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    (out / "backbone.tflite").write_bytes(convert_backbone(backbone, crops))
    (out / "head.tflite").write_bytes(convert_head(head))
    meta = {
        "backbone": "backbone.tflite",
        "head": "head.tflite",
        "version": artifact_format(cfg),
        "cell_stats": True,
        "cell_channels": 2,
        "curves": curves_meta(cfg),
        "stride": 32,
        "grid_stride": cfg.grid_stride,
        "peak_nits": 1000.0,
    }
    (out / "mqn.json").write_text(json.dumps(meta))
    return out, FloatPredictor(keras_sequence(backbone, head), meta)


def _frames() -> np.ndarray:
    rng = np.random.default_rng(9)
    frames = (rng.random((2, 180, 320, 3)) ** 2 * 255).astype(np.uint8)
    frames[:, 60:62, 20:300:9] = 252  # lamps: the cells that read them differ from their neighbours
    return frames


def test_format_6_runs_on_litert_and_matches_float(exported: tuple[Path, object]) -> None:
    from service.colour.description import ColourDescription
    from service.colour.pq import eotf_inverse_st2084
    from service.inference.engine import ModelFiles, MQNEngine
    from service.operators.mqn import MQN

    directory, float_twin = exported
    assert json.loads((directory / "mqn.json").read_text())["version"] == 6
    engine = MQNEngine(ModelFiles.load(directory), num_threads=1)
    colour = ColourDescription.video()
    frames = _frames()
    got = MQN(1000.0, "fast", engine=engine)(frames, colour)
    ref = MQN(1000.0, "fast", engine=float_twin)(frames, colour)  # type: ignore[arg-type]
    codes = lambda x: np.asarray(eotf_inverse_st2084(x), np.float64)  # noqa: E731
    psnr = 10 * np.log10(1.0 / np.mean((codes(got) - codes(ref)) ** 2))
    assert psnr >= 40.0
    # The statistics reach the head: the same view with other cell statistics gives other curves.
    small = np.zeros((1, 64, 128, 3), np.uint8)
    cells = np.zeros((1, 4, 8, 2), np.float32)
    other = np.full_like(cells, 0.5)
    assert np.abs(engine.run(small, cells=cells) - engine.run(small, cells=other)).max() > 1e-3


def test_engine_refuses_a_call_without_the_cells_the_head_reads(exported: tuple[Path, object]) -> None:
    from service.errors import EngineError
    from service.inference.engine import ModelFiles, MQNEngine

    engine = MQNEngine(ModelFiles.load(exported[0]), num_threads=1)
    with pytest.raises(EngineError, match="cell statistics"):
        engine.run(np.zeros((1, 64, 64, 3), np.uint8))
    engine.warm_up(1, 64, 64)  # warm-up feeds zero statistics of the right shape
