"""What the smoke-model fixtures of the learned operators share (one definition; each ``<name>_smoke.py``
says how its model is trained and made to change pixels).

:func:`needs_smoke` skips where a smoke model cannot be made; :func:`train_phased_smoke` trains a phased
smoke config, :func:`randomize` gives a still-initial layer random weights, and :func:`smoke_dir_fixture`
makes the session fixture that builds the model once and points the operator's artefact variable at it.
"""

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.mqn.data import DEFAULT_DATA_DIR


def needs_smoke(what: str) -> pytest.MarkDecorator:
    """Skip unless a smoke ``what`` can be trained and exported here (TensorFlow, LiteRT, the scenes)."""
    return pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None
        or importlib.util.find_spec("ai_edge_litert") is None
        or not (DEFAULT_DATA_DIR / "MANIFEST.csv").exists(),
        reason=f"a smoke {what} needs tensorflow (the `train` extra), ai-edge-litert and the HDR scenes",
    )


def train_phased_smoke(
    config_type: Any, configs: Path, train: Callable[[Any], Any], root: Path, steps: int
) -> Path:
    """Train the ``smoke.json`` in ``configs``, ``steps`` per phase, under ``root``; returns the run's folder.

    ``config_type`` is the model's train config (``load``), ``train`` its training function.
    """
    roots = {"checkpoint_root": str(root / "ck"), "log_root": str(root / "logs"), "threads": 1}
    cfg = config_type.load(configs / "smoke.json", roots)
    cfg.phases = [p | {"steps": steps} for p in cfg.phases]
    train(cfg)
    return root / "ck" / cfg.run


def randomize(layer: Any, sigma: float, rng: np.random.Generator) -> None:
    """Give a Keras ``layer`` random weights of standard deviation ``sigma`` (every weight, bias included)."""
    layer.set_weights([rng.normal(0.0, sigma, w.shape).astype(np.float32) for w in layer.get_weights()])


def smoke_dir_fixture(name: str, dir_env: str, build: Callable[[Path], Path]) -> Any:
    """The session fixture ``<name>_dir``: ``build``'s exported model, with ``dir_env`` pointing at it.

    ``build`` trains and exports under the folder it is given and returns the export's folder. Import the
    fixture into a test module to use it; it is built once per session.
    """

    @pytest.fixture(scope="session", name=f"{name}_dir")
    def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
        directory = build(tmp_path_factory.mktemp(name))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(dir_env, str(directory))
            yield directory

    return exported
