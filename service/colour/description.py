"""How the SDR code values of a frame are to be read: its transfer function and primaries.

A colour value, not an operator concept: the video decoder and the image reader produce it from the input's
tags, the stream protocol from the hello, and every operator consumes it.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.colour.primaries import PRIMARIES_BT2020, chromaticities, matrix_rgb_to_rgb
from service.colour.sdr_transfer import decode_lut_u8
from service.colour.tags import HDR_TRANSFERS, Primaries, Transfer


@dataclass(frozen=True)
class ColourDescription:
    """How the SDR RGB code values of a batch are to be interpreted.

    ``transfer`` picks the display EOTF (BT.1886 for video tags, sRGB for stills and game frames);
    ``primaries`` the input gamut, converted to BT.2020 in linear light.

    Examples
    --------
    >>> ColourDescription.still().transfer is Transfer.IEC61966_2_1
    True
    """

    transfer: Transfer = Transfer.BT709
    primaries: Primaries = Primaries.BT709

    def __post_init__(self) -> None:
        if self.transfer in HDR_TRANSFERS:
            raise ValueError(
                f"input transfer {self.transfer.name} is already HDR; itmstream converts SDR only"
            )

    @classmethod
    def video(cls) -> "ColourDescription":
        """Untagged video: BT.709 primaries shown on a BT.1886 display."""
        return cls(Transfer.BT709, Primaries.BT709)

    @classmethod
    def still(cls) -> "ColourDescription":
        """Untagged PNG/JPEG and game frames: sRGB."""
        return cls(Transfer.IEC61966_2_1, Primaries.BT709)

    def to_bt2020_matrix(self) -> npt.NDArray[np.float64]:
        """Linear-light gamut matrix from the input primaries to BT.2020."""
        return matrix_rgb_to_rgb(chromaticities(self.primaries), PRIMARIES_BT2020)

    def linear_lut(self, scale: float = 1.0) -> npt.NDArray[np.float32]:
        """Code value -> relative linear light (1.0 = SDR white), times ``scale``."""
        return (decode_lut_u8(self.transfer) * np.float32(scale)).astype(np.float32)
