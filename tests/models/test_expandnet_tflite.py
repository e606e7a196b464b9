"""The exported ExpandNet, shipped and smoke-trained: int8 features with the SELU and dilation rewrites in
XNNPACK-friendly ops, a float-activation head, and parity with the float twin."""

import collections
from pathlib import Path

import numpy as np
import pytest

from models.expandnet.artifacts import ARTIFACTS, META_FILE
from tests.models.expandnet_smoke import expandnet_dir, needs_smoke_model
from tests.models.test_mqn_tflite import _interpreter, _ops

pytestmark = [pytest.mark.litert, pytest.mark.train, needs_smoke_model]
__all__ = ["expandnet_dir"]  # the fixture, imported for this module

PARITY_MIN_PQ_PSNR_DB = 40.0
"""Quantized vs float operator output on validation views, PSNR of the PQ code (peak 1.0): MQN's bar."""


@pytest.fixture(params=["shipped", "smoke"])
def exported(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped model (``models/artifacts``) or the smoke-trained one, as ``ITM_EXPANDNET_DIR``."""
    if request.param == "shipped":
        directory = ARTIFACTS
        if not (directory / META_FILE).exists():
            pytest.skip(f"no shipped ExpandNet in {directory}")
    else:
        directory = request.getfixturevalue("expandnet_dir")
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(directory))
    return Path(directory)


def test_features_are_full_integer_with_delegable_ops(exported: Path) -> None:
    from models.expandnet.artifacts import FEATURES_FILE

    it = _interpreter(exported / FEATURES_FILE)
    inputs = {d["name"]: d for d in it.get_input_details()}
    assert len(inputs) == 2
    for d in inputs.values():
        assert d["dtype"] == np.uint8
        scale, zero = d["quantization"]
        assert scale == pytest.approx(1 / 255, rel=1e-3) and zero == 0
    ops = _ops(it)
    assert {"CONV_2D", "ELU", "LEAKY_RELU"} <= ops
    # Keras' dilation and SELU lowerings, which XNNPACK does not run, are gone.
    assert not ops & {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "SELECT_V2", "EXP", "SHAPE"}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    convs = [o for o in it._get_ops_details() if o["op_name"] == "CONV_2D"]
    weights = [it.get_tensor_details()[o["inputs"][1]] for o in convs]
    assert all(t["dtype"] == np.int8 for t in weights)
    dtypes = collections.Counter(t["dtype"] for t in it.get_tensor_details())
    assert dtypes[np.int8] > dtypes[np.float32]  # float only around ELU and at the output


def test_head_has_float_activations_and_builtin_ops(exported: Path) -> None:
    from models.expandnet.artifacts import HEAD_FILE

    it = _interpreter(exported / HEAD_FILE)
    assert [d["dtype"] for d in it.get_input_details()] == [np.float32]
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in _ops(it))


def test_quantized_operator_matches_float_on_validation_views(exported: Path) -> None:
    """int8 features + float head against the float Keras twin, through the output stage, held-out scenes."""
    from models.expandnet.evaluate import float_operator
    from models.mqn.data import DEFAULT_DATA_DIR, SceneBank, SynthesisConfig, read_manifest, split_scenes
    from service.colour.description import ColourDescription
    from service.colour.pq import eotf_inverse_st2084
    from service.operators import create_operator

    _, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, val)
    rng = np.random.default_rng(99)
    sdr = np.stack([bank.sample(rng, (144, 256), SynthesisConfig(), index=i).sdr for i in range(len(val))])
    colour = ColourDescription.still()
    int8 = create_operator("expandnet", peak_nits=1000.0)(sdr, colour)
    ref = float_operator(exported)(sdr, colour)
    bt2408 = create_operator("bt2408", peak_nits=1000.0)(sdr, colour)
    pq = lambda x: np.asarray(eotf_inverse_st2084(x), np.float64)  # noqa: E731
    # A parity test of a model that changes nothing would prove nothing (shipped: ~0.0096, ~10 codes of 1023).
    assert np.abs(pq(ref) - pq(bt2408)).mean() > 0.005, "the test model should not be bt2408"
    psnr = 10 * np.log10(1.0 / np.mean((pq(int8) - pq(ref)) ** 2))
    assert psnr >= PARITY_MIN_PQ_PSNR_DB
