"""File names of the exported MQN artefacts (shared by export, evaluation and tests; no TensorFlow)."""

from service.inference.engine import ARTIFACTS_DIR

ARTIFACTS = ARTIFACTS_DIR
"""Where export writes and the service reads, defined once, by the runtime (models/ imports service)."""
BACKBONE_FILE = "mqn_backbone_int8.tflite"
HEAD_FILE = "mqn_head_dr.tflite"
META_FILE = "mqn.json"
FLOAT_WEIGHTS = "mqn_float.weights.h5"
"""Float Keras weights of the same network: the parity reference, not used at serving time."""
FLOAT_MODEL_JSON = "mqn_float.model.json"
