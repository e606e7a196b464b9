"""The artifact measures, and ``mqn`` held to them on real frames of the shared clips at native size.

Acceptance of the edge-aware model (issue 10): on every checked frame, darkened ≤ 0.01 %, reversal ≤ 0.02 %
(fast) / 0.05 % (quality), hue ≤ 1.5° from BT.2408, mid-tones on the BT.2408 convention; the ferris-wheel
lamps expanded well above SDR white, to at least 600 cd/m² at p99.9 on the ferris frames in both modes.
"""

import numpy as np
import pytest

from models.mqn.visual_checks import VIDEO_DIR, read_frames, score
from service.colour.description import ColourDescription
from service.operators import create_operator
from tests.models.markers import needs_artifacts, needs_litert

needs_clips = pytest.mark.skipif(
    not (VIDEO_DIR / "MANIFEST.csv").exists(), reason=f"no shared SDR clips at {VIDEO_DIR}"
)
STILL = ColourDescription.still()
LUM = np.array([0.2627, 0.6780, 0.0593])


def _bt2408(frame: np.ndarray) -> np.ndarray:
    return create_operator("bt2408", peak_nits=1000.0)(frame[None], STILL)[0]


def test_measures_see_outlines_darkening_and_hue_shifts() -> None:
    """The measures must be able to fail: an outline, a dimmed patch and a hue rotation each register."""
    frame = np.full((64, 64, 3), 40, np.uint8)
    frame[30:34, :] = 240  # a bright bar
    base = _bt2408(frame)
    assert score(base, frame, base).reversal_pct == 0.0
    outlined = base.copy()
    outlined[30, :] = outlined[33, :] = 0.5  # the bar's edge rows come out darker than the ground beside them
    assert score(outlined, frame, base).reversal_pct > 1.0
    dimmed = base * 0.3
    assert score(dimmed, frame, base).darkened_pct > 90.0
    colourful = np.random.default_rng(0).integers(30, 200, (64, 64, 3), dtype=np.uint8)
    cb = _bt2408(colourful)
    assert score(cb[..., [1, 2, 0]], colourful, cb).hue_deg > 20.0
    assert score(cb, colourful, cb).saturation == pytest.approx(1.0)
    grey = (cb @ LUM)[..., None]
    washed = grey + 0.5 * (cb - grey)  # halfway to the white of the same luminance
    assert score(washed, colourful, cb).saturation == pytest.approx(0.5, rel=0.05)


def test_shadow_measure_sees_a_raised_black_level() -> None:
    """The shadow measure reads 0 for the placement itself and the stops a dark-only lift adds."""
    frame = np.random.default_rng(1).integers(8, 120, (64, 64, 3), dtype=np.uint8)
    base = _bt2408(frame)
    assert score(base, frame, base).shadow_stops == pytest.approx(0.0, abs=1e-9)
    dark = (base @ LUM < 3.0)[..., None]
    lifted = np.where(dark, 2.0 * base, base)  # one stop on the shadows only
    assert score(lifted, frame, base).shadow_stops == pytest.approx(1.0, abs=1e-6)


FRAMES = (("aliasing_ferris-ref.mp4", (10, 30)), ("bigbuckbunny.mp4", (66,)), ("sintel.mp4", (300,)))
LIMITS = {"fast": 0.02, "quality": 0.05}


@pytest.fixture(scope="module")
def frames() -> list[tuple[str, np.ndarray]]:
    return [(f"{c}:{i}", f) for c, idx in FRAMES for i, f in zip(idx, read_frames(c, idx), strict=True)]


@needs_clips
@needs_litert
@needs_artifacts
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_mqn_draws_no_outlines_keeps_hue_and_midtones(
    mode: str, frames: list[tuple[str, np.ndarray]]
) -> None:
    op = create_operator("mqn", peak_nits=1000.0, mode=mode)
    for key, frame in frames:
        base = _bt2408(frame)
        out = op(frame[None], STILL)[0]
        s = score(out, frame, base)
        assert s.darkened_pct <= 0.01, f"{key}: darkened {s.darkened_pct:.3f} %"
        assert s.reversal_pct <= LIMITS[mode], f"{key}: reversal {s.reversal_pct:.3f} %"
        assert s.hue_deg <= 1.5, f"{key}: hue {s.hue_deg:.2f}°"
        assert 0.9 <= s.saturation <= 1.5, f"{key}: saturation {s.saturation:.3f} x BT.2408"
        b, o = base @ LUM, out @ LUM
        mid = (b > 5.0) & (b < 100.0)
        ratio = float(np.exp(np.mean(np.log(o[mid] / b[mid]))))
        assert 0.9 <= ratio <= 1.1, f"{key}: mid-tones at {ratio:.3f} x BT.2408"


def _ferris_p999(mode: str, frames: list[tuple[str, np.ndarray]]) -> list[tuple[float, float]]:
    """(mqn, bt2408) p99.9 luminance on the ferris-wheel frames."""
    op = create_operator("mqn", peak_nits=1000.0, mode=mode)
    out = []
    for key, frame in frames:
        if key.startswith("aliasing_ferris"):
            base = _bt2408(frame)
            out.append(
                (
                    score(op(frame[None], STILL)[0], frame, base).p999_nits,
                    float(np.percentile(base @ LUM, 99.9)),
                )
            )
    return out


@needs_clips
@needs_litert
@needs_artifacts
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_mqn_expands_the_night_lamps(mode: str, frames: list[tuple[str, np.ndarray]]) -> None:
    """The lamps of the night scene get well above SDR white (the first model reached 152 cd/m² at p99)."""
    for lamps, sdr_white in _ferris_p999(mode, frames):
        assert lamps >= 1.6 * sdr_white, f"lamps at {lamps:.0f} cd/m², BT.2408 at {sdr_white:.0f}"


@needs_clips
@needs_litert
@needs_artifacts
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_mqn_lamps_reach_600_nits(mode: str, frames: list[tuple[str, np.ndarray]]) -> None:
    """Issue 10: the ferris lamps reach 600 cd/m² at p99.9 on every checked frame, in both modes (quality
    mode's peak curves come from fast mode's view). mqn_v38 by the shared tool: 618-654 fast, 609-644
    quality; the lamps are the first thing a run on larger views loses (model card, mqn_v31-v38)."""
    assert all(lamps >= 600.0 for lamps, _ in _ferris_p999(mode, frames))
