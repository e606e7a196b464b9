"""The exported ExpandNet, shipped and smoke-trained: int8 features with the SELU and dilation rewrites in
XNNPACK-friendly ops, a float-activation head, and parity with the float twin."""

from pathlib import Path

import numpy as np
import pytest

from models.expandnet.artifacts import ARTIFACTS, FEATURES_FILE, HEAD_FILE, META_FILE
from service.operators.expandnet import DIR_ENV
from tests.models.expandnet_smoke import expandnet_dir, needs_smoke_model
from tests.models.learned_tflite import (
    assert_builtin_only,
    assert_full_integer_convs,
    assert_raw_pixel_input,
    check_parity,
    exported_fixture,
)
from tests.models.test_mqn_tflite import _interpreter, _ops

pytestmark = [pytest.mark.litert, pytest.mark.train, needs_smoke_model]
__all__ = ["expandnet_dir"]  # the fixture, imported for this module

exported = exported_fixture("ExpandNet", ARTIFACTS, META_FILE, DIR_ENV, "expandnet_dir")


def test_features_are_full_integer_with_delegable_ops(exported: Path) -> None:
    it = _interpreter(exported / FEATURES_FILE)
    inputs = it.get_input_details()
    assert len(inputs) == 2
    for d in inputs:
        assert_raw_pixel_input(d)
    ops = _ops(it)
    assert {"CONV_2D", "ELU", "LEAKY_RELU"} <= ops
    # Keras' dilation and SELU lowerings, which XNNPACK does not run, are gone.
    assert not ops & {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "SELECT_V2", "EXP", "SHAPE"}
    assert_builtin_only(ops)
    assert_full_integer_convs(it)  # float only around ELU and at the output


def test_head_has_float_activations_and_builtin_ops(exported: Path) -> None:
    it = _interpreter(exported / HEAD_FILE)
    assert [d["dtype"] for d in it.get_input_details()] == [np.float32]
    assert [d["dtype"] for d in it.get_output_details()] == [np.float32]
    assert_builtin_only(_ops(it))


def test_quantized_operator_matches_float_on_validation_views(exported: Path) -> None:
    """int8 features + float head against the float Keras twin, through the output stage, held-out scenes."""
    from models.expandnet.evaluate import float_operator

    # The shipped model is ~0.0096 from bt2408 in PQ (~10 codes of 1023), above NOT_BT2408_MIN_PQ.
    check_parity("expandnet", float_operator, exported, (144, 256))
