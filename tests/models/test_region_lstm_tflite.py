"""The exported region-map ConvLSTM (smoke-trained; the shipped one too once it exists): an int8 SParam-Net,
a float-activation head of builtin ops with the ConvLSTM unrolled, and parity of the whole operator with its
float twin in both modes."""

from pathlib import Path

import numpy as np
import pytest

from models.region_lstm.artifacts import ARTIFACTS, FEATURES_FILE, HEAD_FILE, META_FILE
from service.operators.region_lstm import DIR_ENV
from tests.models.learned_tflite import (
    assert_builtin_only,
    assert_full_integer_convs,
    assert_raw_pixel_input,
    check_parity,
    exported_fixture,
    interpreter,
)
from tests.models.region_lstm_smoke import needs_smoke_model, region_lstm_dir
from tests.models.test_mqn_tflite import _ops

pytestmark = [pytest.mark.litert, pytest.mark.train, needs_smoke_model]
__all__ = ["region_lstm_dir"]  # the fixture, imported for this module

exported = exported_fixture("region_lstm", ARTIFACTS, META_FILE, DIR_ENV, "region_lstm_dir")


def test_sparam_net_is_full_integer_with_builtin_ops(exported: Path) -> None:
    it = interpreter(exported / FEATURES_FILE)
    (inp,) = it.get_input_details()
    assert_raw_pixel_input(inp)
    assert inp["shape"][-1] == 18
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    ops = _ops(it)
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"} <= ops
    assert_builtin_only(ops)
    assert_full_integer_convs(it)


def test_head_has_float_activations_builtin_ops_and_no_loop(exported: Path) -> None:
    it = interpreter(exported / HEAD_FILE)
    assert {d["dtype"].__name__ for d in it.get_input_details()} == {"float32"}
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    ops = _ops(it)
    assert {"CONV_2D", "TRANSPOSE_CONV", "PRELU", "LOGISTIC", "TANH", "SQRT", "LOG", "AVERAGE_POOL_2D"} <= ops
    assert_builtin_only(ops)
    assert "WHILE" not in ops
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 32, 32, 3)


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_quantized_operator_matches_float_on_validation_views(exported: Path, mode: str) -> None:
    """int8 SParam-Net + float head against the float Keras twin, through the output stage."""
    from models.region_lstm.evaluate import float_operator

    check_parity("region_lstm", float_operator, exported, (288, 640), mode=mode)
