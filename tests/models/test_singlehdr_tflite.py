"""The exported SingleHDR (smoke-trained; the shipped one too once it exists): an int8 dequantization U-Net,
a float-activation head of builtin ops, and parity of the whole operator with its float twin in both modes."""

from pathlib import Path

import numpy as np
import pytest

from models.singlehdr.artifacts import ARTIFACTS, FEATURES_FILE, HEAD_FILE, META_FILE
from service.operators.singlehdr import DIR_ENV
from tests.models.learned_tflite import (
    assert_builtin_only,
    assert_full_integer_convs,
    assert_raw_pixel_input,
    check_parity,
    exported_fixture,
    interpreter,
)
from tests.models.singlehdr_smoke import needs_smoke_model, singlehdr_dir
from tests.models.test_mqn_tflite import _ops

pytestmark = [pytest.mark.litert, pytest.mark.train, needs_smoke_model]
__all__ = ["singlehdr_dir"]  # the fixture, imported for this module

exported = exported_fixture("SingleHDR", ARTIFACTS, META_FILE, DIR_ENV, "singlehdr_dir")


def test_dequantization_is_full_integer_with_builtin_ops(exported: Path) -> None:
    it = interpreter(exported / FEATURES_FILE)  # 32 px: the U-Nets need a few pooling levels
    (inp,) = it.get_input_details()
    assert_raw_pixel_input(inp)
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    ops = _ops(it)
    assert {"CONV_2D", "AVERAGE_POOL_2D", "RESIZE_BILINEAR", "TANH"} <= ops
    assert_builtin_only(ops)
    assert_full_integer_convs(it)


def test_head_has_float_activations_and_builtin_ops(exported: Path) -> None:
    it = interpreter(exported / HEAD_FILE)
    assert sorted(d["dtype"].__name__ for d in it.get_input_details()) == ["float32", "float32"]
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    ops = _ops(it)
    assert {"CONV_2D", "MEAN", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "LOG"} <= ops
    assert_builtin_only(ops)


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_quantized_operator_matches_float_on_validation_views(exported: Path, mode: str) -> None:
    """int8 dequantization + float head against the float Keras twin, through the output stage."""
    from models.singlehdr.evaluate import float_operator

    check_parity("singlehdr", float_operator, exported, (144, 256), mode=mode)
