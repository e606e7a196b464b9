"""The LiteRT checks every learned operator's export goes through, for any operator (one definition).

The shipped-or-smoke ``exported`` fixture, an interpreter on a small frame, what "full integer", "raw
pixels in" and "builtin ops only" mean here, and the parity of the whole quantized operator with its float
twin. Each ``test_<name>_tflite.py`` calls these with its own model and adds the ops its network must use,
as ``tests/service/learned_paths.py`` does for the service paths.
"""

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PARITY_MIN_PQ_PSNR_DB = 40.0
"""Quantized vs float operator output on validation views, PSNR of the PQ code (peak 1.0): MQN's bar."""
NOT_BT2408_MIN_PQ = 0.005
"""Mean |PQ| distance from ``bt2408`` below which a parity test would prove nothing."""


def exported_fixture(what: str, artifacts: Path, meta_file: str, dir_env: str, smoke_fixture: str) -> Any:
    """The fixture ``exported``: the shipped model (``artifacts``) or the smoke-trained one, as ``dir_env``.

    The shipped case skips while ``meta_file`` is not in ``artifacts``; the smoke case takes the session
    fixture named ``smoke_fixture`` (import it into the test module too).
    """

    @pytest.fixture(params=["shipped", "smoke"], name="exported")
    def exported(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
        if request.param == "shipped":
            directory = artifacts
            if not (directory / meta_file).exists():
                pytest.skip(f"no shipped {what} in {directory}")
        else:
            directory = request.getfixturevalue(smoke_fixture)
        monkeypatch.setenv(dir_env, str(directory))
        return Path(directory)

    return exported


def interpreter(path: Path, side: int = 32):  # type: ignore[no-untyped-def]
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


def assert_raw_pixel_input(detail: dict[str, Any]) -> None:
    """A uint8 input of scale 1/255 and zero point 0: code values go straight in."""
    assert detail["dtype"] == np.uint8
    scale, zero = detail["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3) and zero == 0


def assert_builtin_only(ops: set[str]) -> None:
    """No TensorFlow (Flex) or custom ops: the file runs on the plain LiteRT runtime."""
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)


def assert_full_integer_convs(it) -> None:  # type: ignore[no-untyped-def]
    """Every convolution has int8 weights, and int8 tensors outnumber float ones (float only at the edges)."""
    convs = [o for o in it._get_ops_details() if o["op_name"] == "CONV_2D"]
    assert all(it.get_tensor_details()[o["inputs"][1]]["dtype"] == np.int8 for o in convs)
    dtypes = collections.Counter(t["dtype"] for t in it.get_tensor_details())
    assert dtypes[np.int8] > dtypes[np.float32]


def check_parity(
    operator: str, float_operator: Callable[..., Any], exported: Path, size: tuple[int, int], **params: str
) -> None:
    """The quantized ``operator`` against ``float_operator`` (its float Keras twin), through the output stage.

    One view of each held-out scene, H x W = ``size``; ``params`` (``mode``) go to both operators.
    """
    from models.mqn.data import DEFAULT_DATA_DIR, SceneBank, SynthesisConfig, read_manifest, split_scenes
    from service.colour.description import ColourDescription
    from service.colour.pq import eotf_inverse_st2084
    from service.operators import create_operator

    _, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, val)
    rng = np.random.default_rng(99)
    sdr = np.stack([bank.sample(rng, size, SynthesisConfig(), index=i).sdr for i in range(len(val))])
    colour = ColourDescription.still()
    int8 = create_operator(operator, peak_nits=1000.0, **params)(sdr, colour)
    ref = float_operator(exported, **params)(sdr, colour)
    bt2408 = create_operator("bt2408", peak_nits=1000.0)(sdr, colour)
    pq = lambda x: np.asarray(eotf_inverse_st2084(x), np.float64)  # noqa: E731
    assert np.abs(pq(ref) - pq(bt2408)).mean() > NOT_BT2408_MIN_PQ, "the test model should not be bt2408"
    psnr = 10 * np.log10(1.0 / np.mean((pq(int8) - pq(ref)) ** 2))
    assert psnr >= PARITY_MIN_PQ_PSNR_DB
