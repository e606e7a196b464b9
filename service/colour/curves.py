"""Named inverse tone curves used by the classical operators (scalar Numba functions, usable per pixel).

References
----------
ITU-R BT.2446-1 (2021) clause 4.3 / table 5: Method A inverse (SDR -> HDR) luma expansion and chroma scaling.
F. Banterle, P. Ledda, K. Debattista, A. Chalmers, "Inverse tone mapping", GRAPHITE 2006, eq. 2-3: the
inverse of Reinhard et al.'s global photographic operator (SIGGRAPH 2002, eq. 4).
"""

import math

import numba

# BT.2446-1 Method A inverse, exponent polynomial E = a Y''^2 + b Y'' + c (table 5). Some public code
# carries 1.2328 for the upper c; continuity of E at Y'' = 70 (both branches give 1.1320) confirms 1.2528.
BT2446A_KNEE = 70.0
BT2446A_LOW = (1.8712e-5, -2.7334e-3, 1.3141)
BT2446A_HIGH = (2.8305e-6, -7.4622e-4, 1.2528)
BT2446A_CHROMA_GAIN = 1.075
BT2446A_PEAK_NITS = 1000.0
BT2446A_GAMMA = 2.4


@numba.njit(cache=True)
def bt2446a_expand_luma(y_sdr: float) -> float:
    """Expanded HDR luma Y'_HDR in [0, 1000] from SDR luma Y' in [0, 1] (BT.2446-1 table 5).

    Examples
    --------
    >>> round(bt2446a_expand_luma(1.0))  # table 5's rounded coefficients give 999.8
    1000
    """
    ypp = 255.0 * min(max(y_sdr, 0.0), 1.0)
    if ypp <= BT2446A_KNEE:
        a, b, c = BT2446A_LOW
    else:
        a, b, c = BT2446A_HIGH
    e = a * ypp * ypp + b * ypp + c
    return ypp**e if ypp > 0.0 else 0.0


@numba.njit(cache=True)
def reinhard_inverse(l_display: float, l_white: float) -> float:
    """Scene luminance L_m whose Reinhard-extended tone mapping is ``l_display`` (Banterle 2006, eq. 3).

    Solves L_d = L_m (1 + L_m / L_white²) / (1 + L_m) for L_m >= 0; L_d = 1 maps to L_white. The root is
    taken in its conjugate form 2 L_d / ((1 - L_d) + sqrt((1 - L_d)² + 4 L_d / L_white²)): the textbook
    0.5 L_white² ((L_d - 1) + sqrt(...)) subtracts two numbers close to 1 and loses every digit for dark
    pixels under a large white point (L_d = 1e-7, L_white = 1000: 2e-4 relative error). NaN counts as 0.

    Examples
    --------
    >>> round(reinhard_inverse(1.0, 4.0), 6)
    4.0
    """
    ld = min(l_display, 1.0) if l_display > 0.0 else 0.0
    dark = 1.0 - ld
    return 2.0 * ld / (dark + math.sqrt(dark * dark + 4.0 * ld / (l_white * l_white)))
