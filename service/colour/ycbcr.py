"""Non-constant-luminance Y'CbCr: matrices, quantisation ranges, and 4:2:0 chroma siting.

This is the *reference* implementation, written for clarity and used to verify the fused kernels in
:mod:`service.colour.kernels` and to read encoded output back. Arrays are HWC, non-linear R'G'B' in [0, 1].

References
----------
ITU-R BT.709-6 table 1 items 3.2-3.3 and 4.6; ITU-R BT.601-7 clause 2.5.1; ITU-R BT.2020-2 table 4
(NCL: Y' = 0.2627 R' + 0.6780 G' + 0.0593 B', Cb = (B' - Y') / 1.8814, Cr = (R' - Y') / 1.4746) and table 5
(narrow range D = round((219 E + 16) * 2^(n-8)), chroma round((224 E + 128) * 2^(n-8))); ITU-T H.273
(chroma sample location type 0, "left": co-sited horizontally with even luma columns, midway vertically).
"""

import numpy as np
import numpy.typing as npt

from service.colour.tags import Matrix, Range

FloatArray = npt.NDArray[np.floating]

LUMA_BT709 = (0.2126, 0.7152, 0.0722)
LUMA_BT601 = (0.299, 0.587, 0.114)
LUMA_BT2020 = (0.2627, 0.6780, 0.0593)
LUMA_SMPTE240M = (0.212, 0.701, 0.087)

_LUMA: dict[Matrix, tuple[float, float, float]] = {
    Matrix.BT709: LUMA_BT709,
    Matrix.BT470BG: LUMA_BT601,
    Matrix.SMPTE170M: LUMA_BT601,
    Matrix.FCC: (0.30, 0.59, 0.11),
    Matrix.SMPTE240M: LUMA_SMPTE240M,
    Matrix.BT2020_NCL: LUMA_BT2020,
}


def luma_for(matrix: Matrix) -> tuple[float, float, float]:
    """Luma coefficients (K_R, K_G, K_B) for a matrix tag.

    Raises
    ------
    ValueError
        For RGB or an unsupported matrix; UNSPECIFIED must be resolved by the caller (see decode defaults).
    """
    try:
        return _LUMA[matrix]
    except KeyError:
        raise ValueError(f"matrix {matrix.name} is not supported; expected one of {list(_LUMA)}") from None


def matrix_rgb_to_ycbcr(luma: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    """3x3 R'G'B' -> Y'CbCr matrix (Cb, Cr in [-0.5, 0.5]) from luma coefficients.

    Examples
    --------
    >>> np.round(matrix_rgb_to_ycbcr(LUMA_BT2020)[2], 4).tolist()
    [0.5, -0.4598, -0.0402]
    """
    kr, kg, kb = luma
    return np.array(
        [
            [kr, kg, kb],
            [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
            [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))],
        ]
    )


def rgb_to_ycbcr(rgb: npt.ArrayLike, luma: tuple[float, float, float]) -> FloatArray:
    """Non-linear R'G'B' (..., 3) -> Y'CbCr (..., 3), analogue values (Y' in [0, 1], C in [-0.5, 0.5])."""
    return np.asarray(rgb, dtype=np.float64) @ matrix_rgb_to_ycbcr(luma).T


def ycbcr_to_rgb(ycc: npt.ArrayLike, luma: tuple[float, float, float]) -> FloatArray:
    """Inverse of :func:`rgb_to_ycbcr`."""
    return np.asarray(ycc, dtype=np.float64) @ np.linalg.inv(matrix_rgb_to_ycbcr(luma)).T


def quantize(ycc: npt.ArrayLike, bits: int, rng: Range) -> npt.NDArray[np.uint16]:
    """Analogue Y'CbCr -> integer code values (BT.2020 table 5 for narrow, full range otherwise).

    Examples
    --------
    >>> quantize([[1.0, 0.0, 0.0]], 10, Range.MPEG).tolist()
    [[940, 512, 512]]
    """
    y, c = _range_scale(bits, rng)
    a = np.asarray(ycc, dtype=np.float64)
    out = np.empty(a.shape, dtype=np.float64)
    out[..., 0] = a[..., 0] * y[0] + y[1]
    out[..., 1:] = a[..., 1:] * c[0] + c[1]
    return np.clip(np.rint(out), 0, (1 << bits) - 1).astype(np.uint16)


def dequantize(codes: npt.ArrayLike, bits: int, rng: Range) -> FloatArray:
    """Inverse of :func:`quantize` (no clipping: super-whites and sub-blacks stay visible)."""
    y, c = _range_scale(bits, rng)
    a = np.asarray(codes, dtype=np.float64)
    out = np.empty(a.shape, dtype=np.float64)
    out[..., 0] = (a[..., 0] - y[1]) / y[0]
    out[..., 1:] = (a[..., 1:] - c[1]) / c[0]
    return out


def _range_scale(bits: int, rng: Range) -> tuple[tuple[float, float], tuple[float, float]]:
    """((Y gain, Y offset), (C gain, C offset)) for ``bits`` and a range tag."""
    if rng is Range.JPEG:
        full = float((1 << bits) - 1)
        return (full, 0.0), (full, float(1 << (bits - 1)))
    k = float(1 << (bits - 8))
    return (219.0 * k, 16.0 * k), (224.0 * k, 128.0 * k)


def subsample_420_left(plane: FloatArray) -> FloatArray:
    """4:2:0 chroma with "left" siting: [1, 2, 1]/4 horizontally on even columns, 2-row average vertically.

    ``plane`` is H x W with even H and W; edges replicate.
    """
    v = 0.5 * (plane[0::2] + plane[1::2])
    left = np.concatenate([v[:, :1], v[:, 1:-1:2]], axis=1)
    right = v[:, 1::2]
    return 0.25 * left + 0.5 * v[:, 0::2] + 0.25 * right


def upsample_420_nearest(plane: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Replicate each chroma sample over its 2x2 luma block: the reconstruction light statistics use."""
    return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)
