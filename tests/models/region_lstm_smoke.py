"""A smoke-trained, exported region-map ConvLSTM for the tests that need real artefacts (none is shipped yet).

:func:`smoke_region_lstm` runs the smoke config's two phases for a couple of steps each, gives SParam-Net's
last layer and the decoder's deconvolution random weights (a smoke-trained model is still at its
initialisation: the curve the same for every frame, the correction zero; parity and the service paths should
see a model whose every part changes pixels), and exports both parts. Import the fixture ``region_lstm_dir``
into a test module; it is built once per session and sets ``ITM_REGION_LSTM_DIR``.
"""

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.mqn.data import DEFAULT_DATA_DIR

needs_smoke_model = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None
    or importlib.util.find_spec("ai_edge_litert") is None
    or not (DEFAULT_DATA_DIR / "MANIFEST.csv").exists(),
    reason="a smoke region_lstm needs tensorflow (the `train` extra), ai-edge-litert and the HDR scenes",
)
RANDOM_SIGMA = {"sp_fc0": 1.0, "sp_fc1": 1.0, "sp_params": 1.0, "fs_deconv": 0.1}
"""Standard deviation of the random weights given to these layers: curves that differ between frames
(through the int8 SParam-Net) and offsets of a few tenths."""


def smoke_region_lstm(root: Path, steps: int = 2) -> Path:
    """Train the smoke config under ``root`` and export it to ``root / "artifacts"``; returns that folder."""
    from models.region_lstm.export import export, load_model
    from models.region_lstm.train import CONFIGS, RegionLSTMTrainConfig, train

    roots = {"checkpoint_root": str(root / "ck"), "log_root": str(root / "logs"), "threads": 1}
    cfg = RegionLSTMTrainConfig.load(CONFIGS / "smoke.json", roots)
    cfg.phases = [p | {"steps": steps} for p in cfg.phases]
    train(cfg)
    run = root / "ck" / cfg.run
    _, net = load_model(run / "model.json", run / "best.weights.h5")
    rng = np.random.default_rng(5)
    for name, sigma in RANDOM_SIGMA.items():
        layer = net.model.get_layer("region_lstm_sparam" if name.startswith("sp_") else "region_lstm_parts")
        layer = layer.get_layer(name)
        layer.set_weights([rng.normal(0.0, sigma, w.shape).astype(np.float32) for w in layer.get_weights()])
    net.model.save_weights(run / "best.weights.h5")
    export(run, root / "artifacts", n_per_scene=1, size=96)
    return root / "artifacts"


@pytest.fixture(scope="session")
def region_lstm_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The exported smoke model, with ``ITM_REGION_LSTM_DIR`` pointing at it for the whole session."""
    directory = smoke_region_lstm(tmp_path_factory.mktemp("region_lstm"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ITM_REGION_LSTM_DIR", str(directory))
        yield directory
