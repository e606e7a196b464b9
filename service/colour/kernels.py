"""Fused per-pixel kernels for the hot path (Numba, parallel over rows).

A NumPy version of "linear nits -> PQ -> Y'CbCr -> 10-bit 4:2:0" makes a dozen full-frame temporaries and
costs ~70 ms per 1080p frame on two cores; these kernels make one pass and write the planes directly.
They implement exactly the maths of :mod:`service.colour.pq` and :mod:`service.colour.ycbcr`, which the
tests use as their reference.

PQ is evaluated through a table indexed by the float32 bit pattern (exponent and the top 10 mantissa bits,
interpolated on the rest): 1024 segments per octave from 2^-60 to 2^14 cd/m², error < 1e-6 of the PQ signal,
so the 10-bit code is exact almost everywhere and never off by more than one. The curve is far from flat
near black (PQ of 1e-6 cd/m² is 1.2e-4, eight 16-bit codes above PQ(0)), which is why the table reaches down
to 2^-60, where PQ is within 1e-7 of PQ(0); anything below it (zero, negative, NaN) takes the first entry.

The HDR10 kernel also measures each frame's light as CTA-861.3 defines MaxCLL/MaxFALL (annex P), on the
full-resolution R'G'B' it is quantising, before chroma subsampling: each pixel's max(R, G, B) rounded to its
10-bit narrow-range PQ code (BT.2100 table 9: 64 + 876 E') and decoded back to cd/m². That code is exact:
the table's estimate is corrected against the light at which each code rounds up (:func:`code_tables`), so
the measurement never depends on the interpolation error. Measuring in the same pass saves a second read of
the frame.
"""

from functools import cache
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.ycbcr import LUMA_BT2020

_SEGMENT_BITS = 13  # mantissa bits interpolated inside a segment (23 - 10 kept)
_LOW_BITS = (127 - 60) << 23  # float32 bit pattern of 2^-60 cd/m²
_HIGH_BITS = (127 + 14) << 23  # float32 bit pattern of 2^14 cd/m² (above the 10000 PQ peak)
_NAN_BITS = 0x7F800000  # +inf; larger patterns are NaN
CODE_BLACK = 64
"""10-bit narrow-range code of PQ signal 0 (BT.2100 table 9: 64 + 876 E')."""
CODE_STEPS = 876
"""10-bit narrow-range codes from PQ signal 0 to 1 (code 940 is 10000 cd/m²)."""

Planes = tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16], npt.NDArray[np.uint16]]
"""(Y, U, V) code values: H x W and H/2 x W/2 uint16, the layout of FFmpeg's ``yuv420p10le``."""

KR, KG, KB = LUMA_BT2020
_CB_DIV = 2.0 * (1.0 - KB)  # 1.8814
_CR_DIV = 2.0 * (1.0 - KR)  # 1.4746


@cache
def pq_encode_table() -> npt.NDArray[np.float32]:
    """PQ signal at every segment boundary of the float32 bit-pattern index (see module docstring)."""
    n = ((_HIGH_BITS - _LOW_BITS) >> _SEGMENT_BITS) + 2
    bits = (_LOW_BITS + (np.arange(n, dtype=np.int64) << _SEGMENT_BITS)).astype(np.uint32)
    table = eotf_inverse_st2084(bits.view(np.float32).astype(np.float64)).astype(np.float32)
    table.setflags(write=False)
    return table


@cache
def code_tables() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The 10-bit narrow-range PQ codes as light: where each rounds up, and what each decodes to.

    Returns
    -------
    tuple of numpy.ndarray
        ``thresholds``: the float32 bit pattern of the light (cd/m²) at which code ``64 + i`` rounds up to
        ``65 + i`` (876 entries; bit patterns of non-negative floats sort like the floats), so a pixel's code
        is 64 plus the number of thresholds at or below its light (round half up). ``levels``: the light of
        each code 64 ... 940 in cd/m² (877 entries).

    References
    ----------
    ITU-R BT.2100-2 table 9 (D = round(876 E' + 64)); SMPTE ST 2084 (PQ).
    """
    codes = np.arange(CODE_STEPS + 1, dtype=np.float64)
    edges = eotf_st2084((codes[:-1] + 0.5) / CODE_STEPS).astype(np.float32)
    thresholds = edges.view(np.uint32).astype(np.int64)
    levels = eotf_st2084(codes / CODE_STEPS).astype(np.float64)
    thresholds.setflags(write=False)
    levels.setflags(write=False)
    return thresholds, levels


@numba.njit(inline="always", fastmath=False)
def pq_from_bits(bits: np.uint32, table: npt.NDArray[np.float32]) -> float:
    """PQ signal of one float32 cd/m² value given as its bit pattern (see the module docstring).

    Inlined into every kernel that emits PQ (HDR10 planes here, stream packers elsewhere), so they all
    round identically.
    """
    b = np.int64(bits)
    if b < _LOW_BITS or b > _NAN_BITS:  # zero, negative (sign bit set => huge), denormal tiny, or NaN
        return float(table[0])
    if b >= _HIGH_BITS:
        return 1.0
    off = b - _LOW_BITS
    i = off >> _SEGMENT_BITS
    f = (off & ((1 << _SEGMENT_BITS) - 1)) * (1.0 / (1 << _SEGMENT_BITS))
    lo = table[i]
    return float(lo + f * (table[i + 1] - lo))


@numba.njit(inline="always")
def _code_index(bits_r, bits_g, bits_b, pq, thresholds):  # type: ignore[no-untyped-def]
    """Index (code - 64) of a pixel's max(R, G, B) 10-bit PQ code, given the channels' bits and max PQ signal.

    ``pq`` comes from the table, so its rounding can be one code off at a boundary; the thresholds settle it.
    NaN and negative channels count as black, as :func:`pq_from_bits` encodes them.
    """
    m = np.int64(0)
    for v in (np.int64(bits_r), np.int64(bits_g), np.int64(bits_b)):
        if v <= _NAN_BITS and v > m:  # larger patterns are NaN or negative (sign bit set)
            m = v
    n = thresholds.shape[0]
    k = min(max(np.int64(np.rint(CODE_STEPS * pq)), 0), n)
    while k < n and m >= thresholds[k]:
        k += 1
    while k > 0 and m < thresholds[k - 1]:
        k -= 1
    return k


@numba.njit(parallel=True, cache=True)
def _nits_to_yuv420p10(  # type: ignore[no-untyped-def]
    bits, table, thresholds, levels, y_plane, u_plane, v_plane, top_code, light_sum
):
    h, w = y_plane.shape
    for ci in numba.prange(h // 2):
        pr = 0.0
        pg = 0.0
        pb = 0.0
        top = 0
        total = 0.0
        for cj in range(w // 2):
            ar0 = 0.0
            ag0 = 0.0
            ab0 = 0.0
            ar1 = 0.0
            ag1 = 0.0
            ab1 = 0.0
            for dr in range(2):
                row = 2 * ci + dr
                for dc in range(2):
                    col = 2 * cj + dc
                    r = pq_from_bits(bits[row, col, 0], table)
                    g = pq_from_bits(bits[row, col, 1], table)
                    b = pq_from_bits(bits[row, col, 2], table)
                    yv = KR * r + KG * g + KB * b
                    y_plane[row, col] = np.uint16(min(max(np.rint(64.0 + 876.0 * yv), 0.0), 1023.0))
                    k = _code_index(
                        bits[row, col, 0], bits[row, col, 1], bits[row, col, 2], max(r, g, b), thresholds
                    )
                    top = max(top, k)
                    total += levels[k]
                    if dc == 0:
                        ar0 += 0.5 * r
                        ag0 += 0.5 * g
                        ab0 += 0.5 * b
                    else:
                        ar1 += 0.5 * r
                        ag1 += 0.5 * g
                        ab1 += 0.5 * b
            if cj == 0:
                pr = ar0
                pg = ag0
                pb = ab0
            cr_ = 0.25 * pr + 0.5 * ar0 + 0.25 * ar1
            cg_ = 0.25 * pg + 0.5 * ag0 + 0.25 * ag1
            cb_ = 0.25 * pb + 0.5 * ab0 + 0.25 * ab1
            yc = KR * cr_ + KG * cg_ + KB * cb_
            cb = (cb_ - yc) / _CB_DIV
            cr = (cr_ - yc) / _CR_DIV
            u_plane[ci, cj] = np.uint16(min(max(np.rint(512.0 + 896.0 * cb), 0.0), 1023.0))
            v_plane[ci, cj] = np.uint16(min(max(np.rint(512.0 + 896.0 * cr), 0.0), 1023.0))
            pr = ar1
            pg = ag1
            pb = ab1
        top_code[ci] = top
        light_sum[ci] = total


class FrameLight(NamedTuple):
    """Light of one frame as encoded (CTA-861.3 annex P): the inputs of MaxCLL and MaxFALL."""

    max_nits: float
    """Brightest pixel: the largest max(R, G, B) after 10-bit PQ quantisation, cd/m²."""
    average_nits: float
    """Frame average of the same per-pixel light, cd/m²."""


def nits_to_yuv420p10_light(
    nits: npt.NDArray[np.float32], out: Planes | None = None
) -> tuple[Planes, FrameLight]:
    """Linear BT.2020 display light -> HDR10 planes, and the frame's light as those codes carry it.

    One pass does both (see the module docstring): the planes are :func:`nits_to_yuv420p10`'s, and the light
    is max(R, G, B) of each full-resolution pixel's 10-bit narrow-range PQ code, decoded back to cd/m², before
    chroma subsampling (what MaxCLL/MaxFALL describe: the master, not a decoder's 4:2:0 reconstruction).

    Parameters
    ----------
    nits : numpy.ndarray
        H x W x 3 float32, RGB in cd/m², even H and W. Negative and NaN become 0 (black), values over
        10000 clip to PQ 1.0 (10000 cd/m²).
    out : tuple of numpy.ndarray, optional
        Preallocated (Y, U, V) uint16 planes, H x W and H/2 x W/2, to avoid per-frame allocation.

    Returns
    -------
    tuple
        (Y, U, V) code values, the layout of FFmpeg's ``yuv420p10le``, and the :class:`FrameLight`.

    Raises
    ------
    ValueError
        If the frame is not H x W x 3 float32 with even H and W.

    References
    ----------
    CTA-861.3-A clause 6.9 and annex P; ITU-R BT.2100-2 table 9; SMPTE ST 2084.

    Examples
    --------
    >>> planes, light = nits_to_yuv420p10_light(np.full((2, 2, 3), 203.0, np.float32))
    >>> int(planes[0][0, 0]), round(light.max_nits, 1), round(light.average_nits, 1)
    (573, 203.7, 203.7)
    """
    if nits.dtype != np.float32 or nits.ndim != 3 or nits.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 float32 frame, got {nits.dtype} {nits.shape}")
    h, w = nits.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even dimensions, got {w}x{h}")
    if out is None:
        out = (
            np.empty((h, w), np.uint16),
            np.empty((h // 2, w // 2), np.uint16),
            np.empty((h // 2, w // 2), np.uint16),
        )
    bits = np.ascontiguousarray(nits).view(np.uint32)
    thresholds, levels = code_tables()
    top_code = np.empty(h // 2, np.int64)
    light_sum = np.empty(h // 2, np.float64)
    _nits_to_yuv420p10(bits, pq_encode_table(), thresholds, levels, *out, top_code, light_sum)
    return out, FrameLight(float(levels[top_code.max()]), float(light_sum.sum() / (h * w)))


def nits_to_yuv420p10(nits: npt.NDArray[np.float32], out: Planes | None = None) -> Planes:
    """Linear BT.2020 display light -> HDR10 planes (PQ, BT.2020 NCL, 10-bit narrow range, 4:2:0 left).

    Parameters
    ----------
    nits : numpy.ndarray
        H x W x 3 float32, RGB in cd/m², C-contiguous, even H and W. Negative and NaN become 0, values over
        10000 clip to PQ 1.0.
    out : tuple of numpy.ndarray, optional
        Preallocated (Y, U, V) uint16 planes, H x W and H/2 x W/2, to avoid per-frame allocation.

    Returns
    -------
    tuple of numpy.ndarray
        (Y, U, V) code values, the layout of FFmpeg's ``yuv420p10le``.

    Raises
    ------
    ValueError
        If the frame is not H x W x 3 float32 with even H and W.
    """
    return nits_to_yuv420p10_light(nits, out)[0]


PIXEL_CHUNK = 4096
"""Pixels per parallel work item: large enough to amortise scheduling, small enough to balance two cores."""


@numba.njit(parallel=True, fastmath=True, cache=True)
def _sdr_to_nits(pixels, lut, matrix, out):  # type: ignore[no-untyped-def]
    # Flat (pixels, 3) views and scalar matrix entries let LLVM keep everything in registers: 6x faster
    # than indexing a 4-D array with the matrix in memory.
    m00, m01, m02 = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    m10, m11, m12 = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    m20, m21, m22 = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    n = pixels.shape[0]
    for chunk in numba.prange((n + PIXEL_CHUNK - 1) // PIXEL_CHUNK):
        for i in range(chunk * PIXEL_CHUNK, min(n, (chunk + 1) * PIXEL_CHUNK)):
            r = lut[pixels[i, 0]]
            g = lut[pixels[i, 1]]
            b = lut[pixels[i, 2]]
            out[i, 0] = m00 * r + m01 * g + m02 * b
            out[i, 1] = m10 * r + m11 * g + m12 * b
            out[i, 2] = m20 * r + m21 * g + m22 * b


def sdr_to_linear(
    frames: npt.NDArray[np.uint8], lut: npt.NDArray[np.float32], matrix: npt.NDArray[np.floating]
) -> npt.NDArray[np.float32]:
    """8-bit non-linear RGB -> linear light through a 256-entry table, then a 3x3 linear-light matrix.

    Parameters
    ----------
    frames : numpy.ndarray
        N x H x W x 3 uint8 code values.
    lut : numpy.ndarray
        256 float32 entries: code value -> linear light (fold any absolute scale in here).
    matrix : numpy.ndarray
        3 x 3 gamut matrix applied as ``out = matrix @ rgb``.

    Returns
    -------
    numpy.ndarray
        N x H x W x 3 float32.
    """
    out = np.empty(frames.shape, np.float32)
    pixels = np.ascontiguousarray(frames).reshape(-1, 3)
    _sdr_to_nits(pixels, lut.astype(np.float32), matrix.astype(np.float32), out.reshape(-1, 3))
    return out


@numba.njit(parallel=True, cache=True)
def pack_rgb10a2_kernel(bits, table, out):  # type: ignore[no-untyped-def]
    """H x W x 3 float32 bit patterns -> H x W uint32 rgb10a2 (see :mod:`service.colour.packing`).

    The stream packers live here, beside :func:`pq_from_bits` which they inline: Numba invalidates a cached
    kernel only when its own file changes, so a packer cached in another module would keep a stale table.
    """
    h, w, _ = bits.shape
    for row in numba.prange(h):
        for col in range(w):
            r = np.uint32(min(max(np.rint(pq_from_bits(bits[row, col, 0], table) * 1023.0), 0.0), 1023.0))
            g = np.uint32(min(max(np.rint(pq_from_bits(bits[row, col, 1], table) * 1023.0), 0.0), 1023.0))
            b = np.uint32(min(max(np.rint(pq_from_bits(bits[row, col, 2], table) * 1023.0), 0.0), 1023.0))
            out[row, col] = r | (g << np.uint32(10)) | (b << np.uint32(20)) | np.uint32(0xC0000000)


@numba.njit(parallel=True, cache=True)
def pack_rgb48_kernel(bits, table, out):  # type: ignore[no-untyped-def]
    """H x W x 3 float32 bit patterns -> H x W x 3 uint16 PQ x 65535 (see :mod:`service.colour.packing`)."""
    h, w, _ = bits.shape
    for row in numba.prange(h):
        for col in range(w):
            for c in range(3):
                v = pq_from_bits(bits[row, col, c], table) * 65535.0
                out[row, col, c] = np.uint16(min(max(np.rint(v), 0.0), 65535.0))
