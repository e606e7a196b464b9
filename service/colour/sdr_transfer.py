"""SDR transfer functions: BT.1886 for video, IEC 61966-2-1 (sRGB) for stills and game frames.

Both decode an 8-bit-derived non-linear signal in [0, 1] to *relative* display light in [0, 1] (1.0 = SDR
reference white); :mod:`service.colour.scaling` says where that white sits in absolute terms.

References
----------
ITU-R BT.1886 annex 1 (with L_B = 0, L_W = 1 the EOTF is a pure 2.4 power); IEC 61966-2-1:1999 clause 5.
"""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from service.colour.tags import Transfer

FloatArray = npt.NDArray[np.floating]

BT1886_GAMMA = 2.4
SRGB_THRESHOLD = 0.04045
SRGB_LINEAR_THRESHOLD = 0.0031308


def _unit(values: npt.ArrayLike) -> FloatArray:
    """float64 clipped to [0, 1], NaN as 0 (as :mod:`service.colour.pq` does), so no EOTF ever returns NaN."""
    return np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)


def eotf_bt1886(signal: npt.ArrayLike) -> FloatArray:
    """BT.1886 EOTF for a zero-black reference display.

    Examples
    --------
    >>> round(float(eotf_bt1886(0.5)), 4)
    0.1895
    """
    v = _unit(signal)
    return v**BT1886_GAMMA


def eotf_inverse_bt1886(light: npt.ArrayLike) -> FloatArray:
    """Inverse of :func:`eotf_bt1886`."""
    return _unit(light) ** (1.0 / BT1886_GAMMA)


def eotf_srgb(signal: npt.ArrayLike) -> FloatArray:
    """IEC 61966-2-1 piecewise decoding (linear toe, 2.4 power with offset).

    Examples
    --------
    >>> round(float(eotf_srgb(0.5)), 4)
    0.214
    """
    v = _unit(signal)
    return np.where(v <= SRGB_THRESHOLD, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def eotf_inverse_srgb(light: npt.ArrayLike) -> FloatArray:
    """Inverse of :func:`eotf_srgb`."""
    x = _unit(light)
    return np.where(x <= SRGB_LINEAR_THRESHOLD, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def eotf_gamma(signal: npt.ArrayLike, gamma: float) -> FloatArray:
    """Pure power-law display EOTF (BT.470 System M 2.2 / System B,G 2.8)."""
    return _unit(signal) ** gamma


def sdr_eotf(transfer: Transfer) -> Callable[[npt.ArrayLike], FloatArray]:
    """Pick the display EOTF an SDR signal tagged ``transfer`` should be decoded with.

    BT.709/BT.601/BT.2020 SDR video tags name a camera OETF, but the signal is *shown* on a BT.1886 display,
    and display light is what ITM must preserve (BT.2408 clause 5), so all of them decode with BT.1886.

    Raises
    ------
    ValueError
        For PQ or HLG (already HDR) and linear signals, which are not SDR inputs.
    """
    match transfer:
        case Transfer.IEC61966_2_1:
            return eotf_srgb
        case Transfer.GAMMA22:
            return lambda v: eotf_gamma(v, 2.2)
        case Transfer.GAMMA28:
            return lambda v: eotf_gamma(v, 2.8)
        case Transfer.BT709 | Transfer.SMPTE170M | Transfer.BT2020_10 | Transfer.BT2020_12:
            return eotf_bt1886
        case _:
            raise ValueError(f"transfer {transfer.name} is not an SDR display transfer")


def decode_lut_u8(transfer: Transfer) -> npt.NDArray[np.float32]:
    """256-entry table from an 8-bit code value to relative linear light: SDR input has only 256 levels."""
    eotf = sdr_eotf(transfer)
    return np.asarray(eotf(np.arange(256) / 255.0), dtype=np.float32)
