"""The PCA basis of inverse response curves that SingleHDR's linearization predicts weights on (NumPy only).

The paper uses the EMoR basis (Grossberg and Nayar, 2004: PCA of 201 measured camera responses). No response
database can be downloaded here, so the basis is built the same way from a dense, seeded family of real
transfer curves, and rebuilt bit for bit whenever the model is built (:func:`response_basis`):

* display transfers: the sRGB and BT.1886 EOTFs, and pure gammas 1.8 to 2.6;
* every tone curve of the harness's SDR synthesis (:data:`models.mqn.data.ALL_CURVES`: clip, gamma and
  sigmoid camera responses, Reinhard, Hable, ACES, AgX, a video camera's knee, each with its random
  parameters drawn from a seeded generator), each encoded by both synthesis transfers
  (:data:`models.mqn.data.TRANSFERS`).

Each curve is an *inverse* response in our absolute convention: SDR code value in [0, 1] -> linear light
relative to SDR white (1.0 = 203 cd/m²), with the scene scaled so that mid-grey lands where the display puts
it (the BT.2408 placement; the training targets are scaled the same way, by their mid-tones) and clipped at
white, then normalised so that 0 -> 0 and 1 -> 1, as the paper's curves are. Sampled at ``KNOTS`` evenly
spaced code values; the basis is the mean curve plus the first ``components`` right singular vectors of the
centred family (``numpy.linalg.svd``).
"""

from functools import cache

import numpy as np
import numpy.typing as npt

from models.mqn.data import ALL_CURVES, TRANSFERS, decode_sdr, encode_sdr, tone_curve

KNOTS = 33
"""Samples per curve: code values 0, 1/32, ..., 1 (the runtime curve is piecewise linear between them)."""
COMPONENTS = 11
"""Principal components kept (the paper's EMoR weights: 11)."""
DRAWS_PER_CURVE = 24
"""Random parameter draws per synthesis tone curve and transfer."""
GAMMAS = 17
"""Pure gammas, evenly spaced over [1.8, 2.6]."""
BASIS_SEED = 20200614
"""Seed of the tone curves' parameter draws (CVPR 2020's first day): the basis never changes by accident."""
MID_GREY = 0.18
"""Display light (1.0 = white) at which a tone curve's scene light is matched to the display's."""

F64 = npt.NDArray[np.float64]


def knot_codes() -> F64:
    """The code values the curves are sampled at."""
    return np.linspace(0.0, 1.0, KNOTS)


def inverse_tone_curve(curve: str, transfer: str, rng: np.random.Generator) -> F64:
    """One synthesis tone curve (random parameters from ``rng``) as a normalised inverse response.

    Scene light x is swept densely; code(x) = encode(tone(x)); the inverse is read at the knots by linear
    interpolation of x over the (monotone) code values; x is scaled so mid-grey display light matches
    (``MID_GREY``), clipped at white, normalised to end at 1.
    """
    x = np.concatenate([[0.0], np.geomspace(1e-5, 256.0, 4000)])
    display, _ = tone_curve(x.astype(np.float32), curve, rng)
    display = np.maximum.accumulate(display.astype(np.float64))
    code = np.asarray(encode_sdr(display.astype(np.float32), transfer), np.float64)
    code = np.maximum.accumulate(code)
    # Flat runs (clipping) keep their first x: the inverse of a clipped response reads the clip point.
    keep = np.concatenate([[True], np.diff(code) > 0])
    inv = np.interp(knot_codes(), code[keep], x[keep])
    mid = float(np.interp(MID_GREY, display[keep], x[keep]))
    g = np.minimum(inv * (MID_GREY / max(mid, 1e-9)), 1.0)
    return g / max(g[-1], 1e-9)


def curve_family() -> F64:
    """Every curve of the family, F x ``KNOTS`` (seeded: the same family on every call)."""
    codes = knot_codes()
    curves = [np.asarray(decode_sdr(codes.astype(np.float32), t), np.float64) for t in TRANSFERS]
    curves += [codes**g for g in np.linspace(1.8, 2.6, GAMMAS)]
    rng = np.random.default_rng(BASIS_SEED)
    for curve in ALL_CURVES:
        for transfer in TRANSFERS:
            curves += [inverse_tone_curve(curve, transfer, rng) for _ in range(DRAWS_PER_CURVE)]
    family = np.stack(curves)
    family[:, 0], family[:, -1] = 0.0, 1.0
    return family


@cache
def response_basis(components: int = COMPONENTS) -> tuple[F64, F64]:
    """(mean curve ``KNOTS``, basis ``components`` x ``KNOTS``) of the family, by SVD of the centred curves.

    Raises
    ------
    ValueError
        If more components are asked for than the family has curves.
    """
    family = curve_family()
    if not 0 < components <= min(family.shape):
        raise ValueError(f"components {components} must be in 1..{min(family.shape)}")
    mean = family.mean(axis=0)
    _, _, vt = np.linalg.svd(family - mean, full_matrices=False)
    return mean, vt[:components].copy()


def explained_variance(components: int = COMPONENTS) -> float:
    """Share of the family's variance the first ``components`` components hold."""
    family = curve_family()
    s = np.linalg.svd(family - family.mean(axis=0), compute_uv=False)
    return float((s[:components] ** 2).sum() / (s**2).sum())
