"""File names of the exported MQN artefacts (shared by export, evaluation and tests; no TensorFlow)."""

from models.mqn.data import REPO_ROOT

ARTIFACTS = REPO_ROOT / "models" / "artifacts"
BACKBONE_FILE = "mqn_backbone_int8.tflite"
HEAD_FILE = "mqn_head_dr.tflite"
META_FILE = "mqn.json"
FLOAT_WEIGHTS = "mqn_float.weights.h5"
"""Float Keras weights of the same network: the parity reference, not used at serving time."""
FLOAT_MODEL_JSON = "mqn_float.model.json"
