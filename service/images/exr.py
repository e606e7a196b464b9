"""OpenEXR output: half-float linear BT.2020 in cd/m², tagged so viewers know both."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import OpenEXR  # type: ignore[import-not-found]

from service.colour.primaries import PRIMARIES_BT2020

BT2020_CHROMATICITIES = tuple(c for xy in PRIMARIES_BT2020 for c in xy)
"""(red x, y, green x, y, blue x, y, white x, y), the layout of the EXR ``chromaticities`` attribute."""


def write_exr(path: Path, nits: npt.NDArray[np.float32]) -> None:
    """Write H x W x 3 linear BT.2020 cd/m² as a ZIP-compressed half-float RGB EXR.

    ``chromaticities`` says BT.2020 and ``whiteLuminance`` = 1 says one unit is 1 cd/m², so the file is
    absolute rather than scene-referred-by-guess. Half floats hold 0..65504 with 11-bit precision, which
    covers PQ's 10000 cd/m² range.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    header = {
        "compression": OpenEXR.ZIP_COMPRESSION,
        "type": OpenEXR.scanlineimage,
        "chromaticities": BT2020_CHROMATICITIES,
        "whiteLuminance": 1.0,
    }
    pixels = np.ascontiguousarray(np.clip(np.nan_to_num(nits), 0.0, 65504.0).astype(np.float16))
    with OpenEXR.File(header, {"RGB": pixels}) as exr:
        exr.write(str(path))
