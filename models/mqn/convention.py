"""The absolute output convention of MQN, shared by data synthesis, evaluation and the runtime.

The network predicts PQ (SMPTE ST 2084) code values of *absolute display light*, BT.709 primaries, with
SDR diffuse white at 203 cd/m² (ITU-R BT.2408) and highlights up to the mastering peak (1000 cd/m²).
The head adds a residual to ``base``: the PQ code of the SDR frame placed at 203 cd/m² (the ``bt2408``
rendering), so a network that outputs zero residual *is* the BT.2408 baseline, and every learned change is
an expansion relative to it. No per-frame normalisation happens anywhere.

The scene-linear reference is put on the same convention by one scale per case: the scale that makes the
reference's mid-tones equal the SDR's mid-tones at 203 cd/m² (:func:`midtone_scale`). Training targets and
the "absolute" evaluation view use the same function, so what the model learns is what it is judged on.
"""

import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.scaling import DEFAULT_PEAK_NITS, SDR_WHITE_NITS

LUMA_BT709 = (0.2126, 0.7152, 0.0722)
"""ITU-R BT.709-6 item 3.2 luminance weights of linear R, G, B."""

MIDTONE_LOW = 0.02
MIDTONE_HIGH = 0.6
"""SDR display-light band (relative, 1.0 = white) whose pixels define "mid-tones": above the noisy,
quantised blacks and below the tone curve's shoulder, where SDR and scene light should agree best."""

PQ_PEAK = float(eotf_inverse_st2084(DEFAULT_PEAK_NITS))
"""PQ code of the 1000 cd/m² training peak (0.7518)."""

F32 = npt.NDArray[np.float32]


def luminance(rgb: npt.NDArray[np.floating]) -> F32:
    """Relative luminance of linear BT.709 RGB (last axis), float32."""
    r, g, b = LUMA_BT709
    return (r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]).astype(np.float32)


def midtone_mask(sdr_display: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
    """Pixels whose SDR display light is in the mid-tone band; falls back to all non-clipped pixels.

    Parameters
    ----------
    sdr_display : numpy.ndarray
        H x W x 3 relative linear SDR display light (1.0 = SDR white).
    """
    y = luminance(sdr_display)
    mask = (y > MIDTONE_LOW) & (y < MIDTONE_HIGH)
    if mask.mean() < 0.02:
        mask = (y > 0.002) & (sdr_display.max(axis=-1) < 0.98)
    if mask.mean() < 0.002:
        mask = np.ones(y.shape, bool)
    return mask


def midtone_scale(
    numerator: npt.NDArray[np.floating], denominator: npt.NDArray[np.floating], mask: npt.NDArray[np.bool_]
) -> float:
    """Scale ``s`` such that ``s * denominator`` matches ``numerator`` on the mask (median of log ratios).

    A median of per-pixel log ratios, not a ratio of means: robust to the few highlight or noise pixels
    that the mask lets through, and independent of how large the masked area is.
    """
    yn = luminance(numerator)[mask].astype(np.float64)
    yd = luminance(denominator)[mask].astype(np.float64)
    ok = (yn > 1e-6) & (yd > 1e-9)
    if ok.sum() < 16:
        return float(np.mean(yn) / max(np.mean(yd), 1e-9))
    return float(np.exp(np.median(np.log(yn[ok]) - np.log(yd[ok]))))


def reference_nits(
    scene: npt.NDArray[np.floating],
    sdr_display: npt.NDArray[np.floating],
    peak_nits: float = DEFAULT_PEAK_NITS,
) -> F32:
    """Scene-linear reference in absolute light: mid-tones where BT.2408 puts the SDR's, peak-clipped.

    Parameters
    ----------
    scene : numpy.ndarray
        H x W x 3 scene-linear BT.709 light (any scale).
    sdr_display : numpy.ndarray
        The SDR rendering of the same view decoded to relative display light (1.0 = SDR white).
    peak_nits : float
        Mastering peak in cd/m²; the reference is clipped there per channel.

    Returns
    -------
    numpy.ndarray
        H x W x 3 float32 cd/m², BT.709 primaries.
    """
    s = midtone_scale(sdr_display * SDR_WHITE_NITS, scene, midtone_mask(sdr_display))
    return np.clip(scene * s, 0.0, peak_nits).astype(np.float32)


def nits_to_pq(nits: npt.ArrayLike) -> F32:
    """Absolute cd/m² -> PQ code in [0, 1], float32."""
    return np.asarray(eotf_inverse_st2084(nits), np.float32)


def pq_to_nits(pq: npt.ArrayLike) -> F32:
    """PQ code -> absolute cd/m², float32."""
    return np.asarray(eotf_st2084(pq), np.float32)
