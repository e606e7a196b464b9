"""MaxCLL/MaxFALL of the frames as encoded: LightMeter over the HDR10 kernel's per-frame light."""

import numpy as np
import pytest

from service.colour.kernels import nits_to_yuv420p10_light
from service.video.hdr10_metadata import ContentLightLevel
from service.video.light import LightMeter


def frame_light(nits: np.ndarray):  # type: ignore[no-untyped-def]
    return nits_to_yuv420p10_light(nits)[1]


def test_meter_keeps_maxima_and_never_exceeds_the_peak() -> None:
    meter = LightMeter()
    meter.add(frame_light(np.full((2, 2, 3), 100.0, np.float32)))
    bright = np.zeros((2, 2, 3), np.float32)
    bright[0, 0, 1] = 1000.0  # the peak itself: code 723 decodes to 1004 cd/m²
    meter.add(frame_light(bright))
    assert meter.frames == 2
    assert meter.max_light == pytest.approx(1004.19, abs=0.01)
    assert meter.content_light(1000.0) == ContentLightLevel(1000, 251)  # capped; FALL of frame 2: 1004 / 4
    assert meter.over_peak(1000.0) is None  # rounding of the peak is not "brighter than the master"
    meter.add(frame_light(np.full((2, 2, 3), 4000.0, np.float32)))
    assert meter.content_light(1000.0) == ContentLightLevel(1000, 1000)
    warning = meter.over_peak(1000.0)
    assert warning is not None and "above the 1000 cd/m² mastering peak" in warning
    assert LightMeter().content_light(1000.0) == ContentLightLevel(0, 0)
