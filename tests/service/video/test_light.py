"""MaxCLL/MaxFALL of the frames as encoded: service.video.light against a plain NumPy recomputation."""

import numpy as np
import pytest

from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.video.hdr10_metadata import ContentLightLevel
from service.video.light import LightMeter, quantised_light


def reference(nits: np.ndarray) -> tuple[float, float]:
    """Brightest and average light after 10-bit narrow-range PQ quantisation of max(R, G, B), in float64."""
    brightest = np.clip(np.nan_to_num(nits.astype(np.float64), nan=0.0, posinf=1e4).max(axis=-1), 0.0, 1e4)
    light = eotf_st2084((np.floor(64 + 876 * eotf_inverse_st2084(brightest) + 0.5) - 64) / 876)
    return float(light.max()), float(light.mean())


@pytest.mark.parametrize("scale", [1e-3, 1.0, 203.0, 1000.0, 12000.0])
def test_quantised_light_matches_numpy(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 10))
    nits = (rng.random((36, 50, 3)) ** 3 * scale).astype(np.float32)
    light, average = quantised_light(nits)
    want_light, want_average = reference(nits)
    assert light == pytest.approx(want_light, rel=1e-9)
    assert average == pytest.approx(want_average, rel=1e-9)


def test_every_code_boundary_rounds_like_the_encoder() -> None:
    # light just below and above each rounding threshold of the 10-bit code
    codes = np.arange(64, 940)
    edges = eotf_st2084((codes + 0.5 - 64) / 876)
    nits = np.stack([edges * (1 - 1e-5), edges * (1 + 1e-5)], axis=1).astype(np.float32)
    frame = np.repeat(nits.reshape(-1, 1, 1), 3, axis=2).reshape(-1, 2, 3)
    light, average = quantised_light(np.ascontiguousarray(frame))
    want_light, want_average = reference(frame)
    assert light == pytest.approx(want_light, rel=1e-9) and average == pytest.approx(want_average, rel=1e-9)


def test_hostile_values_count_as_the_encoder_codes_them() -> None:
    frame = np.zeros((2, 4, 3), np.float32)
    frame[0, 0] = (np.nan, 5.0, -3.0)  # NaN and negative channels are black; the green decides
    frame[0, 1] = (-np.inf, np.nan, np.nan)  # all black
    frame[1, 0] = (np.inf, 0.0, 0.0)  # +inf clips to PQ 1.0: 10000 cd/m²
    light, average = quantised_light(frame)
    assert light == pytest.approx(10000.0)
    assert average == pytest.approx(reference(np.nan_to_num(frame, nan=0.0))[1])
    with pytest.raises(ValueError, match="H x W x 3 float32"):
        quantised_light(np.zeros((2, 2, 3), np.float64))  # type: ignore[arg-type]


def test_meter_keeps_maxima_and_never_exceeds_the_peak() -> None:
    meter = LightMeter()
    meter.add(np.full((2, 2, 3), 100.0, np.float32))
    bright = np.zeros((2, 2, 3), np.float32)
    bright[0, 0, 1] = 1000.0  # the peak itself: code 723 decodes to 1004 cd/m²
    meter.add(bright)
    assert meter.frames == 2
    assert meter.max_light == pytest.approx(1004.19, abs=0.01)
    assert meter.content_light(1000.0) == ContentLightLevel(1000, 251)  # capped; FALL of frame 2: 1004 / 4
    assert meter.over_peak(1000.0) is None  # rounding of the peak is not "brighter than the master"
    meter.add(np.full((2, 2, 3), 4000.0, np.float32))
    assert meter.content_light(1000.0) == ContentLightLevel(1000, 1000)
    warning = meter.over_peak(1000.0)
    assert warning is not None and "above the 1000 cd/m² mastering peak" in warning
    assert LightMeter().content_light(1000.0) == ContentLightLevel(0, 0)
