"""Skip markers shared by the model tests: each names what is missing, so a skip explains itself."""

import importlib.util

import pytest

from models.mqn.artifacts import ARTIFACTS, BACKBONE_FILE, FLOAT_WEIGHTS, HEAD_FILE, META_FILE
from models.mqn.data import DEFAULT_DATA_DIR

needs_tf = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="tensorflow (the `train` extra) is not installed"
)
needs_litert = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert is not installed"
)
needs_data = pytest.mark.skipif(
    not (DEFAULT_DATA_DIR / "MANIFEST.csv").exists(), reason=f"no HDR scenes at {DEFAULT_DATA_DIR}"
)
needs_artifacts = pytest.mark.skipif(
    not all((ARTIFACTS / f).exists() for f in (BACKBONE_FILE, HEAD_FILE, META_FILE)),
    reason=f"no exported MQN in {ARTIFACTS}",
)
needs_float = pytest.mark.skipif(
    not (ARTIFACTS / FLOAT_WEIGHTS).exists(), reason=f"no float MQN weights in {ARTIFACTS}"
)
