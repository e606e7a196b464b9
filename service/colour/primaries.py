"""RGB primaries, the RGB<->XYZ matrices derived from them, and RGB->RGB gamut conversion (linear light).

Matrices are derived from the chromaticities as SMPTE RP 177:1993 clause 3 does, rather than typed in, so
every pair of primaries is covered and the published BT.2087 matrix becomes a test, not an input.

References
----------
ITU-R BT.709-6 table 1 item 1.3; ITU-R BT.2020-2 table 3; ITU-R BT.601-7 (SMPTE 170M / EBU 3213);
ITU-R BT.2087-0 clause 2 (BT.709 -> BT.2020 conversion matrix); SMPTE RP 177:1993.
"""

from functools import cache

import numpy as np
import numpy.typing as npt

from service.colour.tags import Primaries

Chromaticities = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]

WHITEPOINT_D65 = (0.3127, 0.3290)
PRIMARIES_BT709: Chromaticities = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), WHITEPOINT_D65)
PRIMARIES_BT2020: Chromaticities = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), WHITEPOINT_D65)
PRIMARIES_BT470BG: Chromaticities = ((0.640, 0.330), (0.290, 0.600), (0.150, 0.060), WHITEPOINT_D65)
PRIMARIES_SMPTE170M: Chromaticities = ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), WHITEPOINT_D65)
PRIMARIES_DISPLAY_P3: Chromaticities = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), WHITEPOINT_D65)

_BY_TAG: dict[Primaries, Chromaticities] = {
    Primaries.BT709: PRIMARIES_BT709,
    Primaries.BT2020: PRIMARIES_BT2020,
    Primaries.BT470BG: PRIMARIES_BT470BG,
    Primaries.SMPTE170M: PRIMARIES_SMPTE170M,
    Primaries.SMPTE240M: PRIMARIES_SMPTE170M,
}


def chromaticities(tag: Primaries) -> Chromaticities:
    """Chromaticities for a primaries tag; UNSPECIFIED falls back to BT.709, the HD default.

    Raises
    ------
    ValueError
        For a tag with no known chromaticities.
    """
    if tag is Primaries.UNSPECIFIED:
        return PRIMARIES_BT709
    try:
        return _BY_TAG[tag]
    except KeyError:
        raise ValueError(f"primaries {tag.name} are not supported; expected one of {list(_BY_TAG)}") from None


def _xyz(xy: tuple[float, float]) -> npt.NDArray[np.float64]:
    x, y = xy
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


@cache
def matrix_rgb_to_xyz(primaries: Chromaticities) -> npt.NDArray[np.float64]:
    """Normalised primary matrix (RP 177 clause 3.3): linear RGB -> CIE XYZ, with Y of white = 1.

    Examples
    --------
    >>> np.round(matrix_rgb_to_xyz(PRIMARIES_BT2020)[1], 4).tolist()
    [0.2627, 0.678, 0.0593]
    """
    red, green, blue, white = primaries
    p = np.stack([_xyz(red), _xyz(green), _xyz(blue)], axis=1)
    s = np.linalg.solve(p, _xyz(white))
    m = p * s
    m.setflags(write=False)
    return m


@cache
def matrix_rgb_to_rgb(source: Chromaticities, target: Chromaticities) -> npt.NDArray[np.float64]:
    """Linear-light gamut conversion matrix, ``target_rgb = M @ source_rgb``.

    Examples
    --------
    >>> np.round(matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020)[0], 4).tolist()
    [0.6274, 0.3293, 0.0433]
    """
    if source == target:  # exactly the identity: solve() leaves ~1e-17 off the diagonal (negative light)
        m = np.eye(3)
    else:
        m = np.asarray(np.linalg.solve(matrix_rgb_to_xyz(target), matrix_rgb_to_xyz(source)), np.float64)
    m.setflags(write=False)
    return m


def luma_coefficients(primaries: Chromaticities) -> tuple[float, float, float]:
    """(K_R, K_G, K_B): the Y row of the normalised primary matrix, as each standard rounds it.

    Examples
    --------
    >>> [round(k, 4) for k in luma_coefficients(PRIMARIES_BT709)]
    [0.2126, 0.7152, 0.0722]
    """
    kr, kg, kb = matrix_rgb_to_xyz(primaries)[1]
    return float(kr), float(kg), float(kb)
