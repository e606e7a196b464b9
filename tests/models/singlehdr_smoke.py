"""A smoke-trained, exported SingleHDR for the tests that need real artefacts (none is shipped yet).

:func:`smoke_singlehdr` runs the smoke config's four phases for a couple of steps each, gives the refinement's
last convolution random weights (a smoke-trained refinement is still near its zero initialisation, and parity
and the service paths should see a model whose every stage changes pixels), and exports both parts. Import
the fixture ``singlehdr_dir`` into a test module; it is built once per session and sets ``ITM_SINGLEHDR_DIR``.
"""

from pathlib import Path

import numpy as np

from service.operators.singlehdr import DIR_ENV
from tests.models.learned_smoke import needs_smoke, randomize, smoke_dir_fixture, train_phased_smoke

needs_smoke_model = needs_smoke("SingleHDR")
REF_SIGMA = 0.3
"""Standard deviation of the random refinement output weights (offsets of a few tenths of a logit)."""


def smoke_singlehdr(root: Path, steps: int = 2) -> Path:
    """Train the smoke config under ``root`` and export it to ``root / "artifacts"``; returns that folder."""
    from models.singlehdr.export import export, load_model
    from models.singlehdr.train import CONFIGS, SingleHDRTrainConfig, train

    run = train_phased_smoke(SingleHDRTrainConfig, CONFIGS, train, root, steps)
    _, net = load_model(run / "model.json", run / "best.weights.h5")
    randomize(net.stages["ref"].get_layer("ref_out"), REF_SIGMA, np.random.default_rng(5))
    net.model.save_weights(run / "best.weights.h5")
    export(run, root / "artifacts", n_per_scene=1, size=96)
    return root / "artifacts"


singlehdr_dir = smoke_dir_fixture("singlehdr", DIR_ENV, smoke_singlehdr)
