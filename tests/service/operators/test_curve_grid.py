"""Slicing the curve grid: the fused kernel against its NumPy statement, and the properties that keep
outlines, halos, hue shifts and darkening out of ``mqn`` by construction (no model needed)."""

import numpy as np
import pytest

from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084
from service.operators.curve_grid import (
    CurveSpec,
    peak_radius,
    peak_weight,
    slice_curves,
    slice_reference,
    with_coarse_peaks,
)

KNOTS = (0.0, 1.0, 3.0, 8.0, 16.0, 30.0, 50.0, 75.0, 100.0, 130.0, 160.0, 185.0, 203.0)
SPEC = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0)
VIDEO = ColourDescription.video()
LUT = VIDEO.linear_lut(203.0)
MATRIX = VIDEO.to_bt2020_matrix()
MAX_CODE_ERROR = 1.5
"""Kernel vs reference, in 10-bit PQ codes: the kernel samples each curve 128 times in sqrt(Y) (about one
code at most on real curves; below a visible step)."""


def _codes(nits: np.ndarray) -> np.ndarray:
    return np.asarray(eotf_inverse_st2084(np.clip(nits, 0.0, 10000.0)), np.float64) * 1023.0


def _identity(n: int, gh: int, gw: int) -> np.ndarray:
    """Knots that reproduce the BT.2408 placement (output PQ = input PQ)."""
    return np.broadcast_to(SPEC.knot_codes[1:], (n, gh, gw, len(KNOTS) - 1)).astype(np.float32).copy()


def _random_curves(rng: np.random.Generator, n: int, gh: int, gw: int, steepness: float) -> np.ndarray:
    return np.cumsum(rng.random((n, gh, gw, len(KNOTS) - 1)) * steepness, axis=-1).astype(np.float32)


@pytest.mark.parametrize("steepness", [0.02, 0.08])
def test_kernel_matches_the_reference(steepness: float) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 45, 80, 3), dtype=np.uint8)
    knots = _random_curves(rng, 2, 3, 5, steepness)
    got = slice_curves(frames, LUT, MATRIX, knots, SPEC)
    ref = slice_reference(frames, LUT, MATRIX, knots, SPEC)
    assert np.abs(_codes(got) - _codes(ref)).max() <= MAX_CODE_ERROR


def test_identity_curves_give_the_bt2408_placement() -> None:
    frames = np.random.default_rng(2).integers(0, 256, (1, 30, 40, 3), dtype=np.uint8)
    out = slice_curves(frames, LUT, MATRIX, _identity(1, 2, 3), SPEC)
    bt2408 = LUT[frames] @ MATRIX.T
    np.testing.assert_allclose(out, bt2408, rtol=2e-3, atol=2e-3)


def test_output_is_monotone_in_luminance_at_every_place() -> None:
    """A grey ramp sliced anywhere on a wild grid never gets darker as the input gets brighter."""
    rng = np.random.default_rng(3)
    knots = _random_curves(rng, 1, 4, 4, 0.08)
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    frames = np.repeat(ramp[None], 64, axis=1).transpose(0, 2, 1, 3)  # 256 rows of one grey level each
    out = slice_curves(np.ascontiguousarray(frames), LUT, MATRIX, knots, SPEC)
    lum = out @ np.array([0.2627, 0.6780, 0.0593])
    assert np.all(np.diff(lum[0], axis=0) >= -1e-3)


def test_thin_bright_line_stays_brighter_than_its_surroundings() -> None:
    """The ferris-wheel failure: a 1 px bright line over dark ground, with curves that differ per cell."""
    rng = np.random.default_rng(4)
    frames = np.full((1, 64, 96, 3), 30, np.uint8)
    frames[:, 31, :, :] = 250
    frames[:, :20, 47, :] = 240
    knots = _random_curves(rng, 1, 4, 6, 0.06)
    out = slice_curves(frames, LUT, MATRIX, knots, SPEC)
    lum = out[0] @ np.array([0.2627, 0.6780, 0.0593])
    assert lum[31, :].min() > lum[np.r_[29:31, 32:34], :].max()
    assert lum[:20, 47].min() > lum[:20, np.r_[45:47, 48:50]].max()


def test_chromaticity_is_kept_and_output_never_darkens_below_the_floor() -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    bt2408 = LUT[frames] @ MATRIX.T
    # Curves pulled far below the identity: the floor must hold them at 0.6 x the BT.2408 luminance.
    knots = _identity(1, 2, 2) * 0.5
    out = slice_curves(frames, LUT, MATRIX, knots, SPEC)
    w = np.array([0.2627, 0.6780, 0.0593])
    lit = bt2408 @ w > 1.0
    assert np.all((out @ w)[lit] >= 0.6 * (bt2408 @ w)[lit] * 0.999)
    ratio = out[lit] / np.maximum(bt2408[lit], 1e-6)
    big = bt2408[lit] > 0.5
    spread = np.where(big, ratio, np.nan)
    np.testing.assert_allclose(np.nanmax(spread, -1), np.nanmin(spread, -1), rtol=1e-3)


def test_channels_never_pass_the_peak_and_keep_their_ratios() -> None:
    frames = np.array([[[[255, 40, 20], [255, 255, 255], [20, 255, 40]]]], np.uint8)
    knots = np.full((1, 1, 1, len(KNOTS) - 1), 0.9, np.float32)  # far above the 1000 cd/m² peak code
    out = slice_curves(frames, LUT, MATRIX, knots, CurveSpec(KNOTS, 0.6, 1000.0))
    assert out.max() <= 1000.0 + 1e-3
    bt2408 = LUT[frames] @ MATRIX.T
    np.testing.assert_allclose(
        out / out.max(-1, keepdims=True), bt2408 / bt2408.max(-1, keepdims=True), atol=1e-5
    )


def test_batch_mates_do_not_influence_each_other() -> None:
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    knots = _random_curves(rng, 3, 2, 2, 0.05)
    together = slice_curves(frames, LUT, MATRIX, knots, SPEC)
    for i in range(3):
        np.testing.assert_array_equal(
            slice_curves(frames[i : i + 1], LUT, MATRIX, knots[i : i + 1], SPEC)[0], together[i]
        )


def test_grid_with_the_wrong_knot_count_is_refused() -> None:
    with pytest.raises(ValueError, match="knots per cell"):
        slice_curves(np.zeros((1, 8, 8, 3), np.uint8), LUT, MATRIX, np.zeros((1, 1, 1, 5), np.float32), SPEC)


PAIRED = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0, paired=True)


def _paired_curves(rng: np.random.Generator, n: int, gh: int, gw: int) -> np.ndarray:
    base = _random_curves(rng, n, gh, gw, 0.05)
    return np.concatenate([base, base + _random_curves(rng, n, gh, gw, 0.02)], axis=-1)


def _lamp_frame() -> np.ndarray:
    """Dark ground (code 30) with a 2 x 2 lamp (250), a 1 px lit line (240) and a 30 x 30 lit wall (245)."""
    frames = np.full((1, 90, 160, 3), 30, np.uint8)
    frames[:, 20:22, 20:22] = 250
    frames[:, 60, 10:70] = 240
    frames[:, 40:70, 100:130] = 245
    return frames


def _luminance(frames: np.ndarray) -> np.ndarray:
    return np.asarray((LUT[frames] @ MATRIX.T) @ np.array([0.2627, 0.6780, 0.0593]))


def test_peak_weight_finds_small_bright_structures_and_not_the_edges_of_large_ones() -> None:
    """A lamp and a thin lit line read the peak curve; a lit wall of the same level does not, not even at
    its edge (a bright rim there would be an outline), and neither does the dark ground."""
    w = peak_weight(_luminance(_lamp_frame()))[0]
    assert w[20:22, 20:22].min() == 1.0 and w[60, 10:70].min() == 1.0
    assert w[40:70, 100:130].max() == 0.0
    ground = np.ones_like(w, bool)
    ground[19:23, 19:23] = ground[59:62, 9:71] = False
    assert w[ground].max() == 0.0


def test_peak_weight_ratio_keeps_lamps_in_the_dark_and_drops_lines_on_a_lit_wall() -> None:
    """At ratio 2 a pixel must be more than twice as bright as its surroundings: the lamp and the line on
    the dark ground still read the peak curve, a line of the same level across a wall at half of white
    does not."""
    frames = _lamp_frame()
    frames[:, 40:70, 100:130] = 200  # the wall at about half of white
    frames[:, 55, 100:130] = 240  # a lit line across it
    w1, w2 = (peak_weight(_luminance(frames), ratio)[0] for ratio in (1.0, 2.0))
    assert w2[20:22, 20:22].min() == 1.0 and w2[60, 10:70].min() == 1.0
    assert w1[55, 104:126].min() == 1.0 and w2[55, 104:126].max() == 0.0


def test_peak_weight_is_blind_to_the_frame_border() -> None:
    """A flat field and a vertical gradient have weight 0 everywhere, border included; a lamp cut by the
    border is still a lamp."""
    flat = np.full((1, 72, 128), 120.0)
    gradient = np.repeat(np.linspace(20.0, 200.0, 72)[None, :, None], 128, axis=2)
    assert peak_weight(flat).max() == 0.0 and peak_weight(gradient).max() == 0.0
    cut = np.full((1, 72, 128), 5.0)
    cut[0, 0, 60:62] = 190.0
    assert peak_weight(cut)[0, 0, 60:62].min() == 1.0


def test_peak_radius_follows_the_frame_size() -> None:
    assert [peak_radius(h, 16 * h // 9) for h in (144, 360, 720, 1080)] == [1, 2, 4, 6]


@pytest.mark.parametrize("ratio", [1.0, 2.0])
@pytest.mark.parametrize("shape", [(2, 45, 80), (3, 130, 231), (1, 360, 640)])
def test_paired_kernel_matches_the_reference(shape: tuple[int, int, int], ratio: float) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    frames[:, 10:12, 10:13] = 250  # a lamp, whatever the noise does
    knots = _paired_curves(rng, shape[0], 3, 5)
    spec = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0, paired=True, peak_ratio=ratio)
    got = slice_curves(frames, LUT, MATRIX, knots, spec)
    ref = slice_reference(frames, LUT, MATRIX, knots, spec)
    assert np.abs(_codes(got) - _codes(ref)).max() <= MAX_CODE_ERROR


def test_only_peaks_read_the_peak_curve() -> None:
    """Same base curves with and without a brighter peak curve: the lamp and the line get brighter, the
    ground and the wall keep exactly their light."""
    frames = _lamp_frame()
    base = _identity(1, 3, 5)
    single = slice_curves(frames, LUT, MATRIX, base, SPEC)
    paired = slice_curves(frames, LUT, MATRIX, np.concatenate([base, base + 0.05], axis=-1), PAIRED)
    lum_single, lum_paired = (x[0] @ np.array([0.2627, 0.6780, 0.0593]) for x in (single, paired))
    assert np.all(lum_paired[20:22, 20:22] > 1.2 * lum_single[20:22, 20:22])
    assert np.all(lum_paired[60, 10:70] > 1.2 * lum_single[60, 10:70])
    untouched = peak_weight(_luminance(frames))[0] == 0.0
    np.testing.assert_array_equal(paired[0][untouched], single[0][untouched])


def _with_saturation(rng: np.random.Generator, knots: np.ndarray, spread: float) -> np.ndarray:
    log_sat = rng.uniform(-spread, spread, (*knots.shape[:3], 2)).astype(np.float32)
    return np.concatenate([knots, log_sat], axis=-1)


@pytest.mark.parametrize("shape", [(2, 90, 160), (1, 4, 3)], ids=["frame", "narrower-than-the-grid"])
@pytest.mark.parametrize("paired", [False, True])
def test_saturating_kernel_matches_the_reference(paired: bool, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(11)
    frames = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    n = shape[0]
    knots = _paired_curves(rng, n, 3, 5) if paired else _random_curves(rng, n, 3, 5, 0.06)
    spec = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0, paired=paired, peak_ratio=2.0, saturation=True)
    knots = _with_saturation(rng, knots, 1.0)  # beyond the limit on purpose: both clip it the same
    got = slice_curves(frames, LUT, MATRIX, knots, spec)
    ref = slice_reference(frames, LUT, MATRIX, knots, spec)
    assert np.abs(_codes(got) - _codes(ref)).max() <= MAX_CODE_ERROR


def test_a_frame_at_the_saturation_floor_is_the_same_in_any_batch() -> None:
    """A frame whose factors are all 1 skips the saturation pass; whether its batch mate has one must not
    change a single value of it (the skip is decided per frame)."""
    rng = np.random.default_rng(12)
    frames = rng.integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)
    spec = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0, paired=True, peak_ratio=2.0, saturation=True)
    knots = _with_saturation(rng, _paired_curves(rng, 2, 3, 5), 0.5)
    knots[0, ..., -2:] = -0.1  # below the floor: factors of exactly 1
    alone = slice_curves(frames[:1], LUT, MATRIX, knots[:1], spec)
    together = slice_curves(frames, LUT, MATRIX, knots, spec)
    np.testing.assert_array_equal(together[0], alone[0])


def test_saturation_keeps_hue_and_luminance_and_stays_in_gamut() -> None:
    """A colour moves along its line to white: same luminance, same channel order and direction, no channel
    below zero even for the most saturated inputs; zero log-saturation changes nothing."""
    rng = np.random.default_rng(12)
    frames = rng.integers(0, 256, (1, 60, 80, 3), dtype=np.uint8)
    frames[0, :10] = (255, 0, 0)  # at the edge of the SDR gamut
    knots = _random_curves(rng, 1, 2, 3, 0.05)
    spec = CurveSpec(KNOTS, floor=0.6, peak_nits=10000.0, saturation=True, saturation_range=(-0.7, 0.7))
    plain = slice_curves(frames, LUT, MATRIX, knots, CurveSpec(KNOTS, floor=0.6, peak_nits=10000.0))
    zero = slice_curves(frames, LUT, MATRIX, _with_saturation(rng, knots, 0.0), spec)
    np.testing.assert_allclose(zero, plain, rtol=1e-5, atol=1e-5)
    luma = np.array([0.2627, 0.6780, 0.0593])
    for log_sat in (-0.7, 0.7):
        sat = np.concatenate([knots, np.full((1, 2, 3, 2), log_sat, np.float32)], axis=-1)
        out = slice_curves(frames, LUT, MATRIX, sat, spec)
        assert out.min() >= 0.0
        np.testing.assert_allclose(out @ luma, plain @ luma, rtol=2e-3, atol=1e-3)
        chroma_out = out - (out @ luma)[..., None]
        chroma_in = plain - (plain @ luma)[..., None]
        visible = np.linalg.norm(chroma_in, axis=-1) > 1.0
        cos = (chroma_out * chroma_in).sum(-1) / np.maximum(
            np.linalg.norm(chroma_out, axis=-1) * np.linalg.norm(chroma_in, axis=-1), 1e-9
        )
        assert cos[visible].min() > 0.9999  # the same direction from white: the same hue
        ratio = np.linalg.norm(chroma_out, axis=-1)[visible] / np.linalg.norm(chroma_in, axis=-1)[visible]
        if log_sat < 0:
            np.testing.assert_allclose(ratio, np.exp(log_sat), rtol=1e-3)
        else:
            # Random colours: many are capped at the gamut edge, so only the median is well above 1.
            assert ratio.max() <= np.exp(log_sat) * 1.001 and np.median(ratio) > 1.2


def test_default_saturation_range_never_washes_colour_out() -> None:
    """A grid asking for paler colour gets the SDR's own: the shipped bounds do not desaturate."""
    rng = np.random.default_rng(13)
    frames = rng.integers(0, 256, (1, 40, 60, 3), dtype=np.uint8)
    knots = _random_curves(rng, 1, 2, 3, 0.05)
    plain = slice_curves(frames, LUT, MATRIX, knots, SPEC)
    paler = np.concatenate([knots, np.full((1, 2, 3, 2), -0.7, np.float32)], axis=-1)
    spec = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0, saturation=True)
    np.testing.assert_allclose(slice_curves(frames, LUT, MATRIX, paler, spec), plain, rtol=1e-5, atol=1e-5)


def test_coarse_peaks_replace_only_the_peak_curves_and_never_fall_below_the_base() -> None:
    """Quality mode's peak curves from fast mode's coarser grid: base curves and saturation stay the fine
    grid's; a coarse grid of one value per cell side reads the same everywhere; a coarse peak below the fine
    base is lifted to it (a pixel's peak weight can then only brighten it)."""
    spec = CurveSpec(KNOTS, floor=0.6, peak_nits=1000.0, paired=True, saturation=True)
    k = len(KNOTS) - 1
    rng = np.random.default_rng(3)
    fine = np.concatenate(
        [
            _random_curves(rng, 2, 6, 10, 0.05),
            _random_curves(rng, 2, 6, 10, 0.05) + 0.1,
            rng.random((2, 6, 10, 2)),
        ],
        axis=-1,
    ).astype(np.float32)
    coarse = np.concatenate([_random_curves(rng, 2, 2, 4, 0.05)] * 2 + [rng.random((2, 2, 4, 2))], axis=-1)
    coarse[0, ..., k : 2 * k] = 0.5  # frame 0: one flat peak curve at PQ 0.5 everywhere
    out = with_coarse_peaks(fine, coarse.astype(np.float32), spec)
    assert out.shape == fine.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., :k], fine[..., :k])
    np.testing.assert_array_equal(out[..., 2 * k :], fine[..., 2 * k :])
    np.testing.assert_allclose(out[0, ..., k : 2 * k], np.maximum(0.5, fine[0, ..., :k]), atol=1e-6)
    assert (out[..., k : 2 * k] >= out[..., :k]).all()
    # frame 1's peaks are the coarse ones
    assert not np.allclose(out[1, ..., k : 2 * k], fine[1, ..., k : 2 * k])
    with pytest.raises(ValueError, match="paired"):
        with_coarse_peaks(fine[..., :k], coarse[..., :k], SPEC)
