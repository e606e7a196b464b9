"""Classical (non-learned) ITM operators: the floor, the broadcast standard, and the S-curve inverse.

They are the baselines the MQN must beat and the fallbacks when no model is loaded. Each one is a pure
per-pixel map, so batches, tiles and streams all give identical output for identical pixels.
"""

from functools import cache

import numba
import numpy as np
import numpy.typing as npt

from service.colour.curves import (
    BT2446A_CHROMA_GAIN,
    BT2446A_GAMMA,
    BT2446A_PEAK_NITS,
    bt2446a_expand_luma,
    reinhard_inverse,
)
from service.colour.description import ColourDescription
from service.colour.kernels import PIXEL_CHUNK, sdr_to_linear
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS
from service.colour.ycbcr import LUMA_BT2020
from service.operators.base import Frames, Nits, Operator, OperatorInfo, ParamSpec

PEAK_PARAM = ParamSpec("peak_nits", DEFAULT_PEAK_NITS, "mastering peak in cd/m²", 100.0, 10000.0)


class BT2408(Operator):
    """SDR placed in the PQ container at 203 cd/m² reference white (ITU-R BT.2408-7 clause 5.1.1).

    No expansion at all: the honest floor every expanding operator is compared with. ``peak_nits`` only
    matters for metadata; the output never exceeds 203 cd/m².
    """

    info = OperatorInfo(
        "bt2408", "SDR in HDR at 203 cd/m² reference white, no expansion (BT.2408)", (PEAK_PARAM,)
    )

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Linearise, scale white to 203 cd/m², convert primaries to BT.2020."""
        return sdr_to_linear(frames, colour.linear_lut(SDR_WHITE_NITS), colour.to_bt2020_matrix())


_TABLE_STEPS = 4096
"""Segments of the power-law tables below; interpolated, they stay within 0.1 of a 10-bit PQ code."""
_DECODE_RANGE = 2.0
"""R'_HDR / 1000 beyond which the decode table is left for the exact power (saturated colours only)."""


@cache
def _bt2446a_tables() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Tables for the three power laws of BT.2446 A, which otherwise cost seven ``pow`` calls per pixel.

    * gamma encode, indexed by sqrt(linear) so the steep start of x^(1/2.4) is finely sampled;
    * Y' -> Y'_HDR (table 5's exponent curve);
    * (R'_HDR / 1000)^2.4 on [0, 2].
    """
    t = np.arange(_TABLE_STEPS + 2) / _TABLE_STEPS
    encode = np.minimum(t, 1.0) ** (2.0 / BT2446A_GAMMA)
    luma = np.array([bt2446a_expand_luma(min(v, 1.0)) for v in t])
    decode = (t * _DECODE_RANGE) ** BT2446A_GAMMA
    return encode, luma, decode


@numba.njit(inline="always")
def _lookup(table, x):  # type: ignore[no-untyped-def]
    k = int(x)
    f = x - k
    return table[k] + f * (table[k + 1] - table[k])


@numba.njit(inline="always")
def _decode(table, v):  # type: ignore[no-untyped-def]
    if v >= _DECODE_RANGE:
        return v**BT2446A_GAMMA
    return _lookup(table, v * (_TABLE_STEPS / _DECODE_RANGE))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _bt2446a(linear, out, peak_scale, encode, luma, decode):  # type: ignore[no-untyped-def]
    kr, kg, kb = LUMA_BT2020
    n = linear.shape[0]
    gain = BT2446A_PEAK_NITS * peak_scale
    for chunk in numba.prange((n + PIXEL_CHUNK - 1) // PIXEL_CHUNK):
        for i in range(chunk * PIXEL_CHUNK, min(n, (chunk + 1) * PIXEL_CHUNK)):
            # BT.2446 works on gamma-encoded BT.2020 R'G'B' of the SDR signal.
            r = _lookup(encode, np.sqrt(min(max(linear[i, 0], 0.0), 1.0)) * _TABLE_STEPS)
            g = _lookup(encode, np.sqrt(min(max(linear[i, 1], 0.0), 1.0)) * _TABLE_STEPS)
            b = _lookup(encode, np.sqrt(min(max(linear[i, 2], 0.0), 1.0)) * _TABLE_STEPS)
            y = kr * r + kg * g + kb * b
            y_hdr = _lookup(luma, min(y, 1.0) * _TABLE_STEPS)
            scale = BT2446A_CHROMA_GAIN * y_hdr / y if y > 0.0 else 1.0
            cb = scale * (b - y) / (2.0 * (1.0 - kb))
            cr = scale * (r - y) / (2.0 * (1.0 - kr))
            r_hdr = max(y_hdr + 2.0 * (1.0 - kr) * cr, 0.0)
            b_hdr = max(y_hdr + 2.0 * (1.0 - kb) * cb, 0.0)
            g_hdr = max((y_hdr - kr * r_hdr - kb * b_hdr) / kg, 0.0)
            out[i, 0] = gain * _decode(decode, r_hdr / BT2446A_PEAK_NITS)
            out[i, 1] = gain * _decode(decode, g_hdr / BT2446A_PEAK_NITS)
            out[i, 2] = gain * _decode(decode, b_hdr / BT2446A_PEAK_NITS)


class BT2446A(Operator):
    """ITU-R BT.2446-1 Method A inverse: luma expansion by a Y''-dependent exponent, chroma scaled to match.

    Designed for a 1000 cd/m² target; other peaks scale the output linearly (SDR white -> peak).
    """

    info = OperatorInfo("bt2446a", "ITU-R BT.2446 Method A inverse (SDR white -> peak)", (PEAK_PARAM,))

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Run the Method A inverse on the BT.2020 re-encoding of each frame."""
        linear = sdr_to_linear(frames, colour.linear_lut(), colour.to_bt2020_matrix())
        out = np.empty_like(linear)
        peak_scale = self.peak_nits / BT2446A_PEAK_NITS
        _bt2446a(linear.reshape(-1, 3), out.reshape(-1, 3), peak_scale, *_bt2446a_tables())
        return out


@numba.njit(parallel=True, cache=True)
def _inverse_reinhard(linear, out, l_white, key_nits, peak):  # type: ignore[no-untyped-def]
    kr, kg, kb = LUMA_BT2020
    n = linear.shape[0]
    for chunk in numba.prange((n + PIXEL_CHUNK - 1) // PIXEL_CHUNK):
        for i in range(chunk * PIXEL_CHUNK, min(n, (chunk + 1) * PIXEL_CHUNK)):
            r = linear[i, 0]
            g = linear[i, 1]
            b = linear[i, 2]
            lum = kr * r + kg * g + kb * b
            gain = key_nits * reinhard_inverse(lum, l_white) / lum if lum > 1e-9 else key_nits
            out[i, 0] = min(max(r * gain, 0.0), peak)
            out[i, 1] = min(max(g * gain, 0.0), peak)
            out[i, 2] = min(max(b * gain, 0.0), peak)


class InverseReinhard(Operator):
    """Inverse of Reinhard's global photographic operator on luminance, colour ratios kept (Banterle 2006).

    ``key_nits`` is where scene value 1.0 lands: the curve's slope at black is 1, so shadows and mid-tones
    follow ``key_nits`` x SDR light (203 keeps them on the BT.2408 convention) while highlights bend up to
    ``key_nits x l_white``. With ``l_white`` unset it is ``peak / key_nits``, so SDR white reaches the
    peak. Fixed parameters, never per-frame statistics (the log-average "key" of the original paper is
    what makes its video output pump).
    """

    info = OperatorInfo(
        "inverse_reinhard",
        "Inverse Reinhard S-curve on luminance (Banterle et al. 2006)",
        (
            PEAK_PARAM,
            ParamSpec("key_nits", SDR_WHITE_NITS, "cd/m² of scene value 1.0 (mid-tone anchor)", 10.0, 1000.0),
            ParamSpec("l_white", 0.0, "Reinhard white point; 0 = peak / key_nits", 0.0, 1000.0),
        ),
    )

    def __init__(
        self, peak_nits: float = DEFAULT_PEAK_NITS, key_nits: float = SDR_WHITE_NITS, l_white: float = 0.0
    ) -> None:
        super().__init__(peak_nits)
        if not 10.0 <= key_nits <= self.peak_nits:
            raise ValueError(f"key_nits {key_nits} must be between 10 and the peak {self.peak_nits}")
        self.key_nits = float(key_nits)
        self.l_white = float(l_white) if l_white > 0 else self.peak_nits / self.key_nits
        if self.l_white < 1.0:
            raise ValueError(f"l_white {self.l_white} must be >= 1 (white cannot map below itself)")

    @property
    def params(self) -> dict[str, float | str]:
        """Peak, key and white point as run."""
        return {"peak_nits": self.peak_nits, "key_nits": self.key_nits, "l_white": self.l_white}

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Expand luminance through the inverse S-curve, scaling RGB by the same gain."""
        linear = sdr_to_linear(frames, colour.linear_lut(), colour.to_bt2020_matrix())
        out = np.empty_like(linear)
        _inverse_reinhard(
            linear.reshape(-1, 3), out.reshape(-1, 3), self.l_white, self.key_nits, self.peak_nits
        )
        return out
