"""A smoke-trained, exported region-map ConvLSTM for the tests that need real artefacts (none is shipped yet).

:func:`smoke_region_lstm` runs the smoke config's two phases for a couple of steps each, gives SParam-Net's
last layer and the decoder's deconvolution random weights (a smoke-trained model is still at its
initialisation: the curve the same for every frame, the correction zero; parity and the service paths should
see a model whose every part changes pixels), and exports both parts. Import the fixture ``region_lstm_dir``
into a test module; it is built once per session and sets ``ITM_REGION_LSTM_DIR``.
"""

from pathlib import Path

import numpy as np

from service.operators.region_lstm import DIR_ENV
from tests.models.learned_smoke import needs_smoke, randomize, smoke_dir_fixture, train_phased_smoke

needs_smoke_model = needs_smoke("region_lstm")
RANDOM_SIGMA = {"sp_fc0": 1.0, "sp_fc1": 1.0, "sp_params": 1.0, "fs_deconv": 0.1}
"""Standard deviation of the random weights given to these layers: curves that differ between frames
(through the int8 SParam-Net) and offsets of a few tenths."""


def smoke_region_lstm(root: Path, steps: int = 2) -> Path:
    """Train the smoke config under ``root`` and export it to ``root / "artifacts"``; returns that folder."""
    from models.region_lstm.export import export, load_model
    from models.region_lstm.train import CONFIGS, RegionLSTMTrainConfig, train

    run = train_phased_smoke(RegionLSTMTrainConfig, CONFIGS, train, root, steps)
    _, net = load_model(run / "model.json", run / "best.weights.h5")
    rng = np.random.default_rng(5)
    for name, sigma in RANDOM_SIGMA.items():
        layer = net.model.get_layer("region_lstm_sparam" if name.startswith("sp_") else "region_lstm_parts")
        randomize(layer.get_layer(name), sigma, rng)
    net.model.save_weights(run / "best.weights.h5")
    export(run, root / "artifacts", n_per_scene=1, size=96)
    return root / "artifacts"


region_lstm_dir = smoke_dir_fixture("region_lstm", DIR_ENV, smoke_region_lstm)
