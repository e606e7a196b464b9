"""A smoke-trained, exported ExpandNet for the tests that need real artefacts (it is not shipped yet).

:func:`smoke_expandnet` trains the smoke config for a few steps, gives the float head random weights (a
smoke-trained head is still near its zero initialisation, whose output *is* ``bt2408``: parity and the
service paths should see a model that changes pixels), and exports both parts. Import the fixture
``expandnet_dir`` into a test module; it is built once per session and sets ``ITM_EXPANDNET_DIR``.
"""

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.mqn.data import DEFAULT_DATA_DIR

needs_smoke_model = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None
    or importlib.util.find_spec("ai_edge_litert") is None
    or not (DEFAULT_DATA_DIR / "MANIFEST.csv").exists(),
    reason="a smoke ExpandNet needs tensorflow (the `train` extra), ai-edge-litert and the HDR scenes",
)
HEAD_SIGMA = 0.3
"""Standard deviation of the random head weights (offsets of a few tenths of a logit)."""


def smoke_expandnet(root: Path, steps: int = 3) -> Path:
    """Train the smoke config under ``root`` and export it to ``root / "artifacts"``; returns that folder."""
    from models.expandnet.export import export, load_model
    from models.expandnet.train import CONFIGS, ExpandNetTrainConfig, train

    roots = {"checkpoint_root": str(root / "ck"), "log_root": str(root / "logs"), "steps": steps}
    cfg = ExpandNetTrainConfig.load(CONFIGS / "smoke.json", roots | {"val_every": steps})
    train(cfg)
    run = root / "ck" / cfg.run
    _, model, _, head = load_model(run / "model.json", run / "best.weights.h5")
    rng = np.random.default_rng(5)
    head.set_weights([rng.normal(0.0, HEAD_SIGMA, w.shape).astype(np.float32) for w in head.get_weights()])
    model.save_weights(run / "best.weights.h5")
    export(run, root / "artifacts", n_per_scene=1, size=96)
    return root / "artifacts"


@pytest.fixture(scope="session")
def expandnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The exported smoke model, with ``ITM_EXPANDNET_DIR`` pointing at it for the whole session."""
    directory = smoke_expandnet(tmp_path_factory.mktemp("expandnet"))
    old = os.environ.get("ITM_EXPANDNET_DIR")
    os.environ["ITM_EXPANDNET_DIR"] = str(directory)
    yield directory
    if old is None:
        os.environ.pop("ITM_EXPANDNET_DIR", None)
    else:
        os.environ["ITM_EXPANDNET_DIR"] = old
