"""16-bit PNG holding PQ BT.2020 (full range) with cICP, mDCV and cLLI chunks, written by hand.

Pillow writes 16-bit PNGs only for greyscale and knows none of these chunks, and the chunk layout is simple:
length, type, data, CRC-32 over type + data. All three come from the PNG third edition and must come before
IDAT:

* cICP (clause 11.3.2.6): the H.273 code points colour primaries 9 (BT.2020), transfer 16 (PQ), matrix 0
  (RGB) and full range 1.
* mDCV (clause 11.3.2.7), the SMPTE ST 2086 mastering display: chromaticities of red, green, blue and white
  as 16-bit x, y in units of 0.00002, then the maximum and minimum luminance as 32-bit units of
  0.0001 cd/m², 24 bytes in all. The default is what the videos declare: Display P3, D65, 0.0001 to the
  operator's peak.
* cLLI (clause 11.3.2.8), the CTA-861.3 content light level: MaxCLL and MaxFALL as 32-bit units of
  0.0001 cd/m², measured on the 16-bit code values written (max(R, G, B) after PQ decoding; the brightest
  pixel and the image average), never above the mastering peak, as for video.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.colour.primaries import PRIMARIES_DISPLAY_P3, Chromaticities
from service.colour.scaling import DEFAULT_PEAK_NITS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CICP_BT2020_PQ = bytes((9, 16, 0, 1))
MIN_MASTERING_NITS = 0.0001
"""The mastering display's black, as the videos declare it."""


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: big-endian length, 4-byte type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def mdcv_payload(primaries: Chromaticities, max_nits: float, min_nits: float = MIN_MASTERING_NITS) -> bytes:
    """The 24 bytes of an mDCV chunk (red, green, blue, white x/y in 0.00002; luminance in 0.0001 cd/m²).

    Examples
    --------
    >>> payload = mdcv_payload(PRIMARIES_DISPLAY_P3, 1000.0)
    >>> struct.unpack(">8H2I", payload)  # R (0.680, 0.320), G, B, D65, 1000 and 0.0001 cd/m²
    (34000, 16000, 13250, 34500, 7500, 3000, 15635, 16450, 10000000, 1)
    """
    (rx, ry), (gx, gy), (bx, by), (wx, wy) = primaries
    xy = (round(v * 50000) for v in (rx, ry, gx, gy, bx, by, wx, wy))
    return struct.pack(">8H2I", *xy, round(max_nits * 10000), round(min_nits * 10000))


def clli_payload(max_cll: float, max_fall: float) -> bytes:
    """The 8 bytes of a cLLI chunk: MaxCLL, MaxFALL in 0.0001 cd/m² (0 means unknown)."""
    return struct.pack(">2I", round(max_cll * 10000), round(max_fall * 10000))


def content_light(codes: npt.NDArray[np.uint16], peak_nits: float) -> tuple[float, float]:
    """(MaxCLL, MaxFALL) in cd/m² of H x W x 3 PQ codes (x 65535), capped at ``peak_nits``.

    Rounding the peak to a 16-bit code can land a hair above it; the cap keeps that out of the chunk.
    """
    light = eotf_st2084(codes.max(axis=-1) / 65535.0)
    max_cll = min(float(light.max(initial=0.0)), peak_nits)
    return max_cll, min(float(light.mean()) if light.size else 0.0, max_cll)


def encode_pq_png(
    nits: npt.NDArray[np.float32],
    *,
    peak_nits: float = DEFAULT_PEAK_NITS,
    primaries: Chromaticities = PRIMARIES_DISPLAY_P3,
    compression: int = 6,
) -> bytes:
    """H x W x 3 linear BT.2020 cd/m² -> PNG bytes (RGB, 16 bit, PQ code = round(PQ x 65535)).

    Parameters
    ----------
    nits : numpy.ndarray
        H x W x 3 float32, linear BT.2020 RGB in cd/m².
    peak_nits : float
        Mastering display peak in cd/m² (the operator's): mDCV's maximum, and the cap of cLLI.
    primaries : Chromaticities
        Mastering display primaries and white for mDCV (default Display P3, D65).
    compression : int
        zlib level of IDAT.

    Examples
    --------
    >>> data = encode_pq_png(np.full((1, 1, 3), 203.0, np.float32))
    >>> data[:8] == PNG_SIGNATURE
    True
    >>> [data.index(kind) < data.index(b"IDAT") for kind in (b"cICP", b"mDCV", b"cLLI")]
    [True, True, True]
    """
    h, w, _ = nits.shape
    codes = np.rint(eotf_inverse_st2084(nits) * 65535.0).astype(">u2")
    rows = codes.reshape(h, w * 3).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    max_cll, max_fall = content_light(codes, peak_nits)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"cICP", CICP_BT2020_PQ)
        + chunk(b"mDCV", mdcv_payload(primaries, peak_nits))
        + chunk(b"cLLI", clli_payload(max_cll, max_fall))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), compression))
        + chunk(b"IEND", b"")
    )


def write_pq_png(path: Path, nits: npt.NDArray[np.float32], *, peak_nits: float = DEFAULT_PEAK_NITS) -> None:
    """Write :func:`encode_pq_png` output to ``path``.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    Path(path).write_bytes(encode_pq_png(nits, peak_nits=peak_nits))
