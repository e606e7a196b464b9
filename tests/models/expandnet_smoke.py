"""A smoke-trained, exported ExpandNet for the tests that need real artefacts (it is not shipped yet).

:func:`smoke_expandnet` trains the smoke config for a few steps, gives the float head random weights (a
smoke-trained head is still near its zero initialisation, whose output *is* ``bt2408``: parity and the
service paths should see a model that changes pixels), and exports both parts. Import the fixture
``expandnet_dir`` into a test module; it is built once per session and sets ``ITM_EXPANDNET_DIR``.
"""

from pathlib import Path

import numpy as np

from service.operators.expandnet import DIR_ENV
from tests.models.learned_smoke import needs_smoke, randomize, smoke_dir_fixture

needs_smoke_model = needs_smoke("ExpandNet")
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
    randomize(head, HEAD_SIGMA, np.random.default_rng(5))
    model.save_weights(run / "best.weights.h5")
    export(run, root / "artifacts", n_per_scene=1, size=96)
    return root / "artifacts"


expandnet_dir = smoke_dir_fixture("expandnet", DIR_ENV, smoke_expandnet)
