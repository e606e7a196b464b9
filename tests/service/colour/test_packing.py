"""PQ packers against the ST 2084 reference and the documented bit layouts."""

import numpy as np
import pytest

from service.colour.packing import pack_rgb10a2, pack_rgb48, unpack_rgb10a2
from service.colour.pq import eotf_inverse_st2084


@pytest.fixture
def nits() -> np.ndarray:
    rng = np.random.default_rng(0)
    fixed = [0.0, 1e-4, 0.05, 100.0, 203.0, 1000.0, 4000.0, 10000.0]
    levels = np.concatenate([fixed, rng.random(4088) * 2000])
    return levels.astype(np.float32).reshape(64, 64, 1).repeat(3, axis=2)


def test_rgb10a2_matches_reference_within_one_code(nits: np.ndarray) -> None:
    packed = pack_rgb10a2(nits)
    reference = np.rint(eotf_inverse_st2084(nits.astype(np.float64)) * 1023)
    assert np.abs(unpack_rgb10a2(packed).astype(int) - reference).max() <= 1


def test_rgb48_matches_reference_within_one_code(nits: np.ndarray) -> None:
    reference = np.rint(eotf_inverse_st2084(nits.astype(np.float64)) * 65535)
    assert np.abs(pack_rgb48(nits).astype(int) - reference).max() <= 1


def test_rgb10a2_bit_layout() -> None:
    frame = np.zeros((1, 3, 3), np.float32)
    frame[0, 0, 0] = 10000.0  # red only
    frame[0, 1, 1] = 10000.0  # green only
    frame[0, 2, 2] = 10000.0  # blue only
    packed = pack_rgb10a2(frame)[0]
    assert [hex(int(p)) for p in packed] == ["0xc00003ff", "0xc00ffc00", "0xfff00000"]


def test_bad_values_clamp() -> None:
    frame = np.array([[[np.nan, -5.0, np.inf], [1e9, -np.inf, 0.0]]], np.float32)
    codes = unpack_rgb10a2(pack_rgb10a2(frame))
    assert codes.tolist() == [[[0, 0, 1023], [1023, 0, 0]]]  # NaN and negatives -> 0, +inf and huge -> peak


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float64), np.zeros((4, 4), np.float32)])
def test_rejects_wrong_layout(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="H x W x 3 float32"):
        pack_rgb10a2(bad)
    with pytest.raises(ValueError, match="H x W x 3 float32"):
        pack_rgb48(bad)
