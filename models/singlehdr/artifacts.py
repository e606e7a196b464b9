"""File names of the exported SingleHDR (shared by export, evaluation and tests; no TensorFlow).

The runtime names them (:mod:`service.operators.singlehdr`); models/ imports service/, never the reverse.
"""

from service.inference.engine import ARTIFACTS_DIR
from service.operators.singlehdr import FEATURES_FILE, HEAD_FILE, META_FILE

ARTIFACTS = ARTIFACTS_DIR
FLOAT_WEIGHTS = "singlehdr_float.weights.h5"
"""Float Keras weights of the same network: the parity reference, not used at serving time."""
FLOAT_MODEL_JSON = "singlehdr_float.model.json"

__all__ = ["ARTIFACTS", "FEATURES_FILE", "FLOAT_MODEL_JSON", "FLOAT_WEIGHTS", "HEAD_FILE", "META_FILE"]
