"""VideoFrame <-> NumPy: plane copies that respect FFmpeg's padded line sizes."""

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import ColorRange, Colorspace

from service.colour.kernels import Planes
from service.colour.tags import Matrix, Range

_COLORSPACE: dict[Matrix, Colorspace] = {
    Matrix.BT709: Colorspace.ITU709,
    Matrix.BT470BG: Colorspace.ITU601,
    Matrix.SMPTE170M: Colorspace.ITU601,
    Matrix.FCC: Colorspace.FCC,
    Matrix.SMPTE240M: Colorspace.SMPTE240M,
    Matrix.BT2020_NCL: Colorspace.BT2020,
}


def plane_view(frame: av.VideoFrame, index: int) -> npt.NDArray[np.uint16]:
    """Writable H x W uint16 view of plane ``index`` of a 16-bit-per-sample frame (padding excluded)."""
    plane = frame.planes[index]
    rows = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)
    return rows[:, : plane.width]


def yuv420p10_frame(planes: Planes) -> av.VideoFrame:
    """Wrap kernel output (Y H x W, U and V H/2 x W/2 code values) in a new ``yuv420p10le`` frame."""
    y = planes[0]
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p10le")
    for index, src in enumerate(planes):
        plane_view(frame, index)[...] = src
    return frame


def yuv420p10_planes(frame: av.VideoFrame) -> Planes:
    """(Y, U, V) views of a decoded ``yuv420p10le`` frame; valid while the frame lives."""
    if frame.format.name != "yuv420p10le":
        frame = frame.reformat(format="yuv420p10le")  # rare: only non-HDR10 inputs to the statistics
    return plane_view(frame, 0), plane_view(frame, 1), plane_view(frame, 2)


def to_rgb24(
    frame: av.VideoFrame, matrix: Matrix, rng: Range, out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """Decoded frame -> H x W x 3 non-linear R'G'B' code values, with an explicit matrix and range.

    swscale otherwise guesses from the frame's tags, which are missing in most files; the probe's
    defaults (BT.709 for HD, BT.601 for SD) are applied here instead. 8 bits lose nothing for SDR input.
    ``out`` (H x W x 3 uint8) receives the pixels straight from swscale's frame, so a batch is filled without
    a temporary array per frame (6 MB each at 1080p).
    """
    if matrix is Matrix.RGB:  # RGB-coded input (gbrp, rgb24...): no matrix, no range to undo
        rgb = frame if frame.format.name == "rgb24" else frame.reformat(format="rgb24")
    else:
        src_range = ColorRange.JPEG if rng is Range.JPEG else ColorRange.MPEG
        rgb = frame.reformat(
            format="rgb24",
            src_colorspace=_COLORSPACE[matrix],
            src_color_range=src_range,
            dst_color_range=ColorRange.JPEG,
        )
    plane = rgb.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    view = rows[:, : 3 * plane.width].reshape(plane.height, plane.width, 3)
    if out is None:
        return view.copy()
    out[...] = view
    return out
