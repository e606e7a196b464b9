"""Closed sets of colour tags, numbered with FFmpeg's AVCOL_* codes (ITU-T H.273) so PyAV values map 1:1."""

from enum import IntEnum


class Transfer(IntEnum):
    """Transfer characteristics (H.273 table 3, AVCOL_TRC_*)."""

    BT709 = 1
    UNSPECIFIED = 2
    GAMMA22 = 4
    GAMMA28 = 5
    SMPTE170M = 6
    LINEAR = 8
    IEC61966_2_1 = 13
    BT2020_10 = 14
    BT2020_12 = 15
    SMPTE2084 = 16
    ARIB_STD_B67 = 18


class Primaries(IntEnum):
    """Colour primaries (H.273 table 2, AVCOL_PRI_*)."""

    BT709 = 1
    UNSPECIFIED = 2
    BT470BG = 5
    SMPTE170M = 6
    SMPTE240M = 7
    BT2020 = 9


class Matrix(IntEnum):
    """Matrix coefficients (H.273 table 4, AVCOL_SPC_*)."""

    RGB = 0
    BT709 = 1
    UNSPECIFIED = 2
    FCC = 4
    BT470BG = 5
    SMPTE170M = 6
    SMPTE240M = 7
    BT2020_NCL = 9


class Range(IntEnum):
    """Quantisation range (AVCOL_RANGE_*): MPEG is limited ("TV", 64-940 at 10 bit), JPEG is full."""

    UNSPECIFIED = 0
    MPEG = 1
    JPEG = 2


HDR_TRANSFERS = frozenset({Transfer.SMPTE2084, Transfer.ARIB_STD_B67})
"""Inputs tagged with these are already HDR; the SDR->HDR operators must not see them."""
