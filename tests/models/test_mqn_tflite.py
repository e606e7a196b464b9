"""The shipped LiteRT files: int8 backbone, dynamic-range head, builtin ops only, float parity."""

import collections
from pathlib import Path

import numpy as np
import pytest

from models.mqn.artifacts import BACKBONE_FILE, HEAD_FILE
from models.mqn.data import DEFAULT_DATA_DIR
from tests.models.markers import needs_artifacts, needs_data, needs_float, needs_litert, needs_tf

pytestmark = [pytest.mark.litert, needs_litert, needs_artifacts]

PARITY_MIN_PQ_PSNR_DB = 35.0
"""Quantized vs float on validation crops, PSNR of the PQ code (peak 1.0)."""


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


def test_head_has_float_activations_and_int8_weights(artifacts: Path) -> None:
    it = _interpreter(artifacts / HEAD_FILE)
    inputs = {d["name"]: d["dtype"] for d in it.get_input_details()}
    # Raw uint8 pixels go in (cast inside); features, base and output are float32.
    assert sorted(np.dtype(t).name for t in inputs.values()) == ["float32", "float32", "uint8"]
    assert all(d["dtype"] == np.float32 for d in it.get_output_details())
    int8 = [t for t in it.get_tensor_details() if t["dtype"] == np.int8]
    assert int8, "no int8 weights: the head was not dynamic-range quantized"
    assert all(len(t["shape"]) == 4 for t in int8), "only conv weights may be int8 (activations stay float)"
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in _ops(it))
    assert {"MEAN", "RSQRT"} <= _ops(it)  # instance norm from builtin reductions


@needs_tf
@needs_data
@needs_float
@pytest.mark.train
def test_quantized_pipeline_matches_float_on_validation_crops(artifacts: Path) -> None:
    from models.mqn.data import SceneBank, SynthesisConfig, read_manifest, split_scenes
    from models.mqn.export import load_float
    from service.inference.engine import ModelFiles, MQNEngine

    _, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, val)
    rng = np.random.default_rng(99)
    samples = [bank.sample(rng, (128, 128), SynthesisConfig(), index=i) for i in range(len(val))]
    sdr = np.stack([s.sdr for s in samples])
    base = np.stack([s.base for s in samples])
    _, model, _, _ = load_float(artifacts)
    ref = model([sdr.astype(np.float32) / 255.0, base], training=False).numpy()
    got = MQNEngine(ModelFiles.load(artifacts), num_threads=2).run(sdr, base)
    psnr = 10 * np.log10(1.0 / np.mean((got - ref) ** 2))
    assert psnr >= PARITY_MIN_PQ_PSNR_DB
