"""SMPTE ST 2084 perceptual quantizer (PQ): the HDR10 transfer function.

References
----------
SMPTE ST 2084:2014, clause 4 (EOTF) and 5 (inverse EOTF); ITU-R BT.2100-2 table 4.
"""

import numpy as np
import numpy.typing as npt

from service.colour.scaling import PQ_PEAK_NITS

M1 = 2610 / 4096 / 4
M2 = 2523 / 4096 * 128
C1 = 3424 / 4096
C2 = 2413 / 4096 * 32
C3 = 2392 / 4096 * 32
_RATIO_GAP = 1.0 - C1
"""(C1 + C2 u) / (1 + C3 u) = 1 - (1 - C1)(1 - u) / (1 + C3 u), since C1 + C2 = 1 + C3. Written the second
way the encoding is a chain of operations that each keep order, and black and peak are exact (u = 0 gives
C1, u = 1 gives 1); written as the quotient, two roundings can reverse the order of close inputs, and the
power M2 (~79) multiplies the slip: PQ(1e-104 cd/m²) came out 1e-14 below PQ(0)."""

FloatArray = npt.NDArray[np.floating]


def eotf_inverse_st2084(nits: npt.ArrayLike) -> FloatArray:
    """Encode absolute luminance as a PQ signal.

    Parameters
    ----------
    nits : array_like
        Display light in cd/m²; values are clipped to [0, 10000] (NaN becomes 0).

    Returns
    -------
    numpy.ndarray
        Non-linear PQ signal in [0, 1], float64.

    References
    ----------
    SMPTE ST 2084:2014 clause 5.

    Examples
    --------
    >>> round(float(eotf_inverse_st2084(100.0)), 4)
    0.5081
    >>> round(float(eotf_inverse_st2084(10000.0)), 4)
    1.0
    """
    y = np.nan_to_num(np.asarray(nits, dtype=np.float64), nan=0.0, posinf=PQ_PEAK_NITS)
    y = np.clip(y / PQ_PEAK_NITS, 0.0, 1.0)
    ym1 = y**M1
    return (1.0 - _RATIO_GAP * (1.0 - ym1) / (1.0 + C3 * ym1)) ** M2


def eotf_st2084(signal: npt.ArrayLike) -> FloatArray:
    """Decode a PQ signal to absolute luminance.

    Parameters
    ----------
    signal : array_like
        Non-linear PQ signal; clipped to [0, 1] (NaN becomes 0).

    Returns
    -------
    numpy.ndarray
        Display light in cd/m², float64, in [0, 10000].

    References
    ----------
    SMPTE ST 2084:2014 clause 4.

    Examples
    --------
    >>> round(float(eotf_st2084(0.5807)), 0)
    203.0
    """
    e = np.clip(np.nan_to_num(np.asarray(signal, dtype=np.float64), nan=0.0), 0.0, 1.0)
    ep = e ** (1.0 / M2)
    return PQ_PEAK_NITS * (np.maximum(ep - C1, 0.0) / (C2 - C3 * ep)) ** (1.0 / M1)
