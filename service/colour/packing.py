"""Linear BT.2020 cd/m² -> PQ code values packed for display swapchains (one fused Numba pass per frame).

The PQ curve is evaluated through :func:`service.colour.kernels.pq_encode_table` with the same bit-pattern
lookup the HDR10 encoder kernel uses, so stream output and file output agree to the code value. Output is
full range (0 … 2^n - 1), as a display swapchain expects, not the narrow range of video Y'CbCr.

Layouts (little-endian, row-major, no row padding), as documented in docs/PROTOCOL.md:

* ``rgb10a2``: one uint32 per pixel, R in bits 0-9, G in 10-19, B in 20-29, A = 3 in 30-31
  (DXGI_FORMAT_R10G10B10A2_UNORM / Vulkan A2B10G10R10_UNORM_PACK32, HDR10 swapchain format).
* ``rgb48``: three uint16 per pixel, R, G, B, each PQ x 65535.
"""

import numpy as np
import numpy.typing as npt

from service.colour.kernels import pack_rgb10a2_kernel, pack_rgb48_kernel, pq_encode_table


def _check(nits: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]:
    if nits.dtype != np.float32 or nits.ndim != 3 or nits.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 float32 frame, got {nits.dtype} {nits.shape}")
    return np.ascontiguousarray(nits).view(np.uint32)


def pack_rgb10a2(nits: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]:
    """Linear BT.2020 cd/m² -> PQ 10-bit RGB + 2-bit alpha packed in one uint32 per pixel.

    Parameters
    ----------
    nits : numpy.ndarray
        H x W x 3 float32, RGB, linear display light in cd/m². Negative and NaN become 0, values over
        10000 clip to PQ 1.0.

    Returns
    -------
    numpy.ndarray
        H x W uint32: R bits 0-9, G 10-19, B 20-29, alpha 30-31 = 3 (opaque); full-range PQ codes.

    Raises
    ------
    ValueError
        If ``nits`` is not H x W x 3 float32.

    Examples
    --------
    >>> import numpy as np
    >>> px = pack_rgb10a2(np.full((1, 1, 3), 10000.0, np.float32))
    >>> hex(int(px[0, 0]))
    '0xffffffff'
    """
    bits = _check(nits)
    out = np.empty(bits.shape[:2], np.uint32)
    pack_rgb10a2_kernel(bits, pq_encode_table(), out)
    return out


def pack_rgb48(nits: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]:
    """Linear BT.2020 cd/m² -> full-range 16-bit PQ RGB.

    Parameters
    ----------
    nits : numpy.ndarray
        H x W x 3 float32, RGB, linear display light in cd/m².

    Returns
    -------
    numpy.ndarray
        H x W x 3 uint16, PQ signal x 65535.

    Raises
    ------
    ValueError
        If ``nits`` is not H x W x 3 float32.

    Examples
    --------
    >>> import numpy as np
    >>> pack_rgb48(np.array([[[0.0, 100.0, 10000.0]]], np.float32)).tolist()
    [[[0, 33297, 65535]]]
    """
    bits = _check(nits)
    out = np.empty(nits.shape, np.uint16)
    pack_rgb48_kernel(bits, pq_encode_table(), out)
    return out


def unpack_rgb10a2(packed: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint16]:
    """H x W uint32 rgb10a2 -> H x W x 3 uint16 10-bit PQ codes (for clients and tests).

    Raises
    ------
    ValueError
        If ``packed`` is not a 2-D uint32 array.
    """
    if packed.dtype != np.uint32 or packed.ndim != 2:
        raise ValueError(f"expected H x W uint32, got {packed.dtype} {packed.shape}")
    shifts = np.array([0, 10, 20], np.uint32)
    return ((packed[..., None] >> shifts) & np.uint32(0x3FF)).astype(np.uint16)
