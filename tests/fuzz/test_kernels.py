"""The fused Numba kernels of service/colour/kernels.py (and the stream packers built on them) against the
float64 NumPy reference they claim to implement, on arbitrary frames, hostile values included.

Tolerances are the ones the kernels document: 10-bit codes never more than one off, the PQ table within
1e-6 of the signal, light statistics within the 16384-step decode table's interpolation error.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.colour.kernels import (
    nits_to_yuv420p10,
    pq_encode_table,
    pq_from_bits,
    sdr_to_linear,
)
from service.colour.packing import pack_rgb10a2, pack_rgb48, unpack_rgb10a2
from service.colour.pq import eotf_inverse_st2084
from tests.fuzz.strategies import HOSTILE_FLOATS, nits_frames, uint8_frames
from tests.service.colour.test_kernels import reference_planes

PQ_TABLE_ERROR = 1e-6
"""Largest |table PQ - exact PQ| the kernels' module docstring promises, in PQ signal units."""


@given(HOSTILE_FLOATS | st.floats(0.0, 2.0**-19, width=32))
def test_pq_table_lookup_matches_the_exact_curve_for_any_float32(x: float) -> None:
    value = np.float32(x)
    exact = float(eotf_inverse_st2084(np.float64(value)))
    assert abs(pq_from_bits(value.view(np.uint32), pq_encode_table()) - exact) <= PQ_TABLE_ERROR


@given(nits_frames())
def test_hdr10_planes_are_within_one_code_of_the_reference(nits: np.ndarray) -> None:
    got = nits_to_yuv420p10(nits)
    for plane, want in zip(got, reference_planes(nits), strict=True):
        assert np.abs(plane.astype(int) - want.astype(int)).max() <= 1
        assert plane.min() >= 64 and plane.max() <= 960  # narrow range, whatever came in


@given(nits_frames())
def test_stream_packers_are_within_one_code_of_the_reference(nits: np.ndarray) -> None:
    pq = eotf_inverse_st2084(nits.astype(np.float64))
    for codes, full in ((unpack_rgb10a2(pack_rgb10a2(nits)), 1023), (pack_rgb48(nits), 65535)):
        assert np.abs(codes.astype(int) - np.rint(pq * full).astype(int)).max() <= 1, full


@given(
    uint8_frames(batch=True),
    hnp.arrays(np.float32, 256, elements=st.floats(0.0, 10000.0, width=32)),
    hnp.arrays(np.float64, (3, 3), elements=st.floats(-2.0, 2.0)),
)
def test_sdr_to_linear_is_table_then_matrix(frames: np.ndarray, lut: np.ndarray, matrix: np.ndarray) -> None:
    """fastmath may fuse and reorder the three products: allow 4 float32 ulps of their absolute sum."""
    got = sdr_to_linear(frames, lut, matrix)
    light = lut[frames].astype(np.float64)
    m32 = matrix.astype(np.float32).astype(np.float64)
    want = light @ m32.T
    bound = 4 * np.finfo(np.float32).eps * (np.abs(light) @ np.abs(m32).T) + np.finfo(np.float32).tiny
    assert got.shape == frames.shape and got.dtype == np.float32
    assert np.all(np.abs(got - want) <= bound)
