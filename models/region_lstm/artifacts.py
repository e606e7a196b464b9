"""File names of the exported region-map ConvLSTM (shared by export, evaluation and tests; no TensorFlow).

The runtime names them (:mod:`service.operators.region_lstm`); models/ imports service/, never the reverse.
"""

from service.inference.engine import ARTIFACTS_DIR
from service.operators.region_lstm import FEATURES_FILE, HEAD_FILE, META_FILE

ARTIFACTS = ARTIFACTS_DIR
FLOAT_WEIGHTS = "region_lstm_float.weights.h5"
"""Float Keras weights of the same network: the parity reference, not used at serving time."""
FLOAT_MODEL_JSON = "region_lstm_float.model.json"

__all__ = ["ARTIFACTS", "FEATURES_FILE", "FLOAT_MODEL_JSON", "FLOAT_WEIGHTS", "HEAD_FILE", "META_FILE"]
