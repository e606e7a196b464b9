"""The exported region-map ConvLSTM (smoke-trained; the shipped one too once it exists): an int8 SParam-Net,
a float-activation head of builtin ops with the ConvLSTM unrolled, and parity of the whole operator with its
float twin in both modes."""

import collections
from pathlib import Path

import numpy as np
import pytest

from models.region_lstm.artifacts import ARTIFACTS, META_FILE
from tests.models.region_lstm_smoke import needs_smoke_model, region_lstm_dir
from tests.models.test_mqn_tflite import _ops

pytestmark = [pytest.mark.litert, pytest.mark.train, needs_smoke_model]
__all__ = ["region_lstm_dir"]  # the fixture, imported for this module

PARITY_MIN_PQ_PSNR_DB = 40.0
"""Quantized vs float operator output on validation views, PSNR of the PQ code (peak 1.0): MQN's bar."""
NOT_BT2408_MIN_PQ = 0.005
"""Mean |PQ| distance from ``bt2408`` below which a parity test would prove nothing."""


def _interpreter(path: Path, side: int = 32):  # type: ignore[no-untyped-def]
    """An interpreter with its frame-sized inputs set to 1 x side x side x 3 (the others as exported)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    for d in it.get_input_details():
        if list(d["shape_signature"][1:3]) == [-1, -1]:
            it.resize_tensor_input(d["index"], [1, side, side, 3], strict=False)
        elif d["shape_signature"][0] == -1:
            it.resize_tensor_input(d["index"], [1, *d["shape"][1:]], strict=False)
    it.allocate_tensors()
    return it


@pytest.fixture(params=["shipped", "smoke"])
def exported(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped model (``models/artifacts``) or the smoke-trained one, as ``ITM_REGION_LSTM_DIR``."""
    if request.param == "shipped":
        directory = ARTIFACTS
        if not (directory / META_FILE).exists():
            pytest.skip(f"no shipped region_lstm in {directory}")
    else:
        directory = request.getfixturevalue("region_lstm_dir")
    monkeypatch.setenv("ITM_REGION_LSTM_DIR", str(directory))
    return Path(directory)


def test_sparam_net_is_full_integer_with_builtin_ops(exported: Path) -> None:
    from models.region_lstm.artifacts import FEATURES_FILE

    it = _interpreter(exported / FEATURES_FILE)
    (inp,) = it.get_input_details()
    assert inp["dtype"] == np.uint8 and inp["shape"][-1] == 18
    scale, zero = inp["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3) and zero == 0
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    ops = _ops(it)
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    convs = [o for o in it._get_ops_details() if o["op_name"] == "CONV_2D"]
    assert all(it.get_tensor_details()[o["inputs"][1]]["dtype"] == np.int8 for o in convs)
    dtypes = collections.Counter(t["dtype"] for t in it.get_tensor_details())
    assert dtypes[np.int8] > dtypes[np.float32]


def test_head_has_float_activations_builtin_ops_and_no_loop(exported: Path) -> None:
    from models.region_lstm.artifacts import HEAD_FILE

    it = _interpreter(exported / HEAD_FILE)
    assert {d["dtype"].__name__ for d in it.get_input_details()} == {"float32"}
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    ops = _ops(it)
    assert {"CONV_2D", "TRANSPOSE_CONV", "PRELU", "LOGISTIC", "TANH", "SQRT", "LOG", "AVERAGE_POOL_2D"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" or op == "WHILE" for op in ops)
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 32, 32, 3)


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_quantized_operator_matches_float_on_validation_views(exported: Path, mode: str) -> None:
    """int8 SParam-Net + float head against the float Keras twin, through the output stage."""
    from models.mqn.data import DEFAULT_DATA_DIR, SceneBank, SynthesisConfig, read_manifest, split_scenes
    from models.region_lstm.evaluate import float_operator
    from service.colour.description import ColourDescription
    from service.colour.pq import eotf_inverse_st2084
    from service.operators import create_operator

    _, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, val)
    rng = np.random.default_rng(99)
    sdr = np.stack([bank.sample(rng, (288, 640), SynthesisConfig(), index=i).sdr for i in range(len(val))])
    colour = ColourDescription.still()
    int8 = create_operator("region_lstm", peak_nits=1000.0, mode=mode)(sdr, colour)
    ref = float_operator(exported, mode=mode)(sdr, colour)
    bt2408 = create_operator("bt2408", peak_nits=1000.0)(sdr, colour)
    pq = lambda x: np.asarray(eotf_inverse_st2084(x), np.float64)  # noqa: E731
    assert np.abs(pq(ref) - pq(bt2408)).mean() > NOT_BT2408_MIN_PQ, "the test model should not be bt2408"
    psnr = 10 * np.log10(1.0 / np.mean((pq(int8) - pq(ref)) ** 2))
    assert psnr >= PARITY_MIN_PQ_PSNR_DB
