"""A smoke-trained, exported SingleHDR for the tests that need real artefacts (none is shipped yet).

:func:`smoke_singlehdr` runs the smoke config's four phases for a couple of steps each, gives the refinement's
last convolution random weights (a smoke-trained refinement is still near its zero initialisation, and parity
and the service paths should see a model whose every stage changes pixels), and exports both parts. Import
the fixture ``singlehdr_dir`` into a test module; it is built once per session and sets ``ITM_SINGLEHDR_DIR``.
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
    reason="a smoke SingleHDR needs tensorflow (the `train` extra), ai-edge-litert and the HDR scenes",
)
REF_SIGMA = 0.3
"""Standard deviation of the random refinement output weights (offsets of a few tenths of a logit)."""


def smoke_singlehdr(root: Path, steps: int = 2) -> Path:
    """Train the smoke config under ``root`` and export it to ``root / "artifacts"``; returns that folder."""
    from models.singlehdr.export import export, load_model
    from models.singlehdr.train import CONFIGS, SingleHDRTrainConfig, train

    roots = {"checkpoint_root": str(root / "ck"), "log_root": str(root / "logs"), "threads": 1}
    cfg = SingleHDRTrainConfig.load(CONFIGS / "smoke.json", roots)
    cfg.phases = [p | {"steps": steps} for p in cfg.phases]
    train(cfg)
    run = root / "ck" / cfg.run
    _, net = load_model(run / "model.json", run / "best.weights.h5")
    out = net.stages["ref"].get_layer("ref_out")
    rng = np.random.default_rng(5)
    out.set_weights([rng.normal(0.0, REF_SIGMA, w.shape).astype(np.float32) for w in out.get_weights()])
    net.model.save_weights(run / "best.weights.h5")
    export(run, root / "artifacts", n_per_scene=1, size=96)
    return root / "artifacts"


@pytest.fixture(scope="session")
def singlehdr_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The exported smoke model, with ``ITM_SINGLEHDR_DIR`` pointing at it for the whole session."""
    directory = smoke_singlehdr(tmp_path_factory.mktemp("singlehdr"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ITM_SINGLEHDR_DIR", str(directory))
        yield directory
