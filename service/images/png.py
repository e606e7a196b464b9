"""16-bit PNG holding PQ BT.2020 (full range) with a cICP chunk, written by hand.

Pillow writes 16-bit PNGs only for greyscale and has no cICP support, and the chunk layout is simple:
length, type, data, CRC-32 over type + data. cICP (PNG 3rd edition, clause 11.3.2.6) carries the H.273 code
points colour primaries 9 (BT.2020), transfer 16 (PQ), matrix 0 (RGB) and full range 1, and must come before
IDAT.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_inverse_st2084

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CICP_BT2020_PQ = bytes((9, 16, 0, 1))


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: big-endian length, 4-byte type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_pq_png(nits: npt.NDArray[np.float32], compression: int = 6) -> bytes:
    """H x W x 3 linear BT.2020 cd/m² -> PNG bytes (RGB, 16 bit, PQ code = round(PQ x 65535)).

    Examples
    --------
    >>> data = encode_pq_png(np.full((1, 1, 3), 203.0, np.float32))
    >>> data[:8] == PNG_SIGNATURE and b"cICP" in data and data.index(b"cICP") < data.index(b"IDAT")
    True
    """
    h, w, _ = nits.shape
    codes = np.rint(eotf_inverse_st2084(nits) * 65535.0).astype(">u2")
    rows = codes.reshape(h, w * 3).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"cICP", CICP_BT2020_PQ)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), compression))
        + chunk(b"IEND", b"")
    )


def write_pq_png(path: Path, nits: npt.NDArray[np.float32]) -> None:
    """Write :func:`encode_pq_png` output to ``path``.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    Path(path).write_bytes(encode_pq_png(nits))
