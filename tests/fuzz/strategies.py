"""Hypothesis strategies shared by the fuzz modules: frames of display light, hostile floats, JSON values."""

import json
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

HOSTILE_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
"""Every float32, NaN, infinities, denormals and negatives included: what a buggy operator could emit."""

NITS = st.one_of(st.floats(0.0, 10000.0, width=32), HOSTILE_FLOATS)
"""Display light in cd/m², half in the meaningful range, half anything."""

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


def nits_frames(max_half_side: int = 4) -> st.SearchStrategy[np.ndarray]:
    """H x W x 3 float32 frames of cd/m² with even H and W (4:2:0), up to ``2 * max_half_side`` a side."""
    shapes = st.tuples(st.integers(1, max_half_side), st.integers(1, max_half_side)).map(
        lambda hw: (2 * hw[0], 2 * hw[1], 3)
    )
    return hnp.arrays(np.float32, shapes, elements=NITS)


def uint8_frames(max_side: int = 8, batch: bool = False) -> st.SearchStrategy[np.ndarray]:
    """H x W x 3 uint8 SDR frames (N x H x W x 3 with ``batch``)."""
    side = st.integers(1, max_side)
    dims = st.tuples(st.integers(1, 2), side, side) if batch else st.tuples(side, side)
    return hnp.arrays(np.uint8, dims.map(lambda d: (*d, 3)))


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON document (kept small)."""


def json_text(value: Any) -> str:
    """``value`` as JSON text, the way a peer would send it."""
    return json.dumps(value)
