"""The shipped LiteRT files: int8 backbone, float-activation head, builtin ops only, float parity."""

import collections
from pathlib import Path

import numpy as np
import pytest

from models.mqn.artifacts import BACKBONE_FILE, HEAD_FILE
from models.mqn.data import DEFAULT_DATA_DIR
from tests.models.markers import needs_artifacts, needs_data, needs_float, needs_litert, needs_tf

pytestmark = [pytest.mark.litert, needs_litert, needs_artifacts]

PARITY_MIN_PQ_PSNR_DB = 40.0
"""Quantized vs float operator output on validation views, PSNR of the PQ code (peak 1.0)."""


def _interpreter(path: Path):  # type: ignore[no-untyped-def]
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def _ops(it) -> set[str]:  # type: ignore[no-untyped-def]
    return {op["op_name"] for op in it._get_ops_details()}


def test_backbone_is_full_integer(artifacts: Path) -> None:
    it = _interpreter(artifacts / BACKBONE_FILE)
    (inp,) = it.get_input_details()
    assert inp["dtype"] == np.uint8
    scale, zero = inp["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3) and zero == 0
    dtypes = collections.Counter(t["dtype"] for t in it.get_tensor_details())
    # Float appears only at the boundary: the final dequantize's output.
    assert dtypes[np.float32] <= 1 and dtypes[np.int8] > 100
    ops = _ops(it)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    weights = [t for t in it.get_tensor_details() if "conv" in t["name"].lower() and len(t["shape"]) == 4]
    assert weights and all(t["dtype"] == np.int8 for t in weights)


def test_head_has_float_activations_and_builtin_ops(artifacts: Path) -> None:
    it = _interpreter(artifacts / HEAD_FILE)
    # Features, and with a global path also the low-resolution SDR: float either way.
    assert {d["dtype"] for d in it.get_input_details()} == {np.float32}
    assert all(d["dtype"] == np.float32 for d in it.get_output_details())
    int8 = [t for t in it.get_tensor_details() if t["dtype"] == np.int8]
    assert all(len(t["shape"]) >= 2 for t in int8), "only weights may be int8 (activations stay float)"
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in _ops(it))
    assert "EXP" in _ops(it)  # the monotone log-slope parametrisation, in float


@needs_tf
@needs_data
@needs_float
@pytest.mark.train
def test_quantized_pipeline_matches_float_on_validation_views(artifacts: Path) -> None:
    """int8 backbone + DR head against the float Keras network, through the slicing, on held-out scenes."""
    from models.mqn.data import SceneBank, SynthesisConfig, read_manifest, split_scenes
    from models.mqn.evaluate import FloatPredictor, keras_sequence
    from models.mqn.export import load_float
    from service.colour.description import ColourDescription
    from service.colour.pq import eotf_inverse_st2084
    from service.inference.engine import ModelFiles, MQNEngine
    from service.operators.mqn import MQN

    _, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, val)
    rng = np.random.default_rng(99)
    samples = [bank.sample(rng, (256, 384), SynthesisConfig(), index=i) for i in range(len(val))]
    sdr = np.stack([s.sdr for s in samples])
    engine = MQNEngine(ModelFiles.load(artifacts), num_threads=2)
    _, _, backbone, head = load_float(artifacts)
    float_op = MQN(1000.0, "fast", engine=FloatPredictor(keras_sequence(backbone, head), engine.meta))
    int8_op = MQN(1000.0, "fast", engine=engine)
    colour = ColourDescription.still()
    got = np.asarray(eotf_inverse_st2084(int8_op(sdr, colour)), np.float64)
    ref = np.asarray(eotf_inverse_st2084(float_op(sdr, colour)), np.float64)
    psnr = 10 * np.log10(1.0 / np.mean((got - ref) ** 2))
    assert psnr >= PARITY_MIN_PQ_PSNR_DB
