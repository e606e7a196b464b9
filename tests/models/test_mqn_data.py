"""Data synthesis: determinism, the family-aware split, views and the absolute target convention."""

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from models.mqn.convention import PQ_PEAK, pq_to_nits, reference_nits
from models.mqn.data import (
    ALL_CURVES,
    DEFAULT_DATA_DIR,
    Scene,
    SceneBank,
    SynthesisConfig,
    add_emitters,
    batches,
    light_source_stops,
    perspective_view,
    read_manifest,
    split_scenes,
    synthesize,
    tone_curve,
    video_knee_code,
)
from tests.models.markers import needs_data

pytestmark = pytest.mark.data


def _scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.exp(rng.normal(-1.0, 1.5, (48, 64, 3))).astype(np.float32)
    img[10:14, 20:24] = 80.0  # a light source
    return img


def test_synthesis_is_deterministic_given_a_seed() -> None:
    a = synthesize(_scene(), np.random.default_rng(7), SynthesisConfig())
    b = synthesize(_scene(), np.random.default_rng(7), SynthesisConfig())
    c = synthesize(_scene(), np.random.default_rng(8), SynthesisConfig())
    np.testing.assert_array_equal(a.sdr, b.sdr)
    np.testing.assert_array_equal(a.target, b.target)
    assert a.meta == b.meta
    assert not np.array_equal(a.sdr, c.sdr) or a.meta != c.meta


def test_target_is_absolute_pq_clipped_at_peak() -> None:
    for seed in range(10):
        s = synthesize(_scene(seed), np.random.default_rng(seed), SynthesisConfig())
        assert s.sdr.dtype == np.uint8 and s.sdr.shape == (48, 64, 3)
        assert s.target.min() >= 0.0 and s.target.max() <= PQ_PEAK + 1e-6
        assert s.base.max() <= 0.5808  # the BT.2408 placement never exceeds 203 cd/m²


@pytest.mark.parametrize("curve", ALL_CURVES)
def test_tone_curves_map_into_sdr_range_monotonically(curve: str) -> None:
    x = np.geomspace(1e-4, 100.0, 200).astype(np.float32)
    d, _ = tone_curve(x, curve, np.random.default_rng(0))
    assert d.min() >= 0.0 and d.max() <= 1.0
    assert np.all(np.diff(d) >= -1e-6)


def test_video_knee_puts_light_far_above_white_into_unclipped_near_white_codes() -> None:
    # A camera knee at code 0.85 reaching white at 5x: scene light 3x white must come out unclipped
    # and near white, and everything below the knee point follows the BT.709 OETF.
    x = np.array([0.018, 0.18, 1.0, 3.0, 5.0, 9.0], np.float32)
    code = video_knee_code(x, knee=0.85, white=5.0)
    np.testing.assert_allclose(code[:2], [0.081, 0.409], atol=1e-3)  # BT.709 OETF at 0.018 and 0.18
    assert 0.85 < code[2] < code[3] < 1.0 and code[3] ** 2.2 > 0.85  # displayed near white
    assert code[4] == code[5] == 1.0
    s = synthesize(_scene(), np.random.default_rng(0), SynthesisConfig(p_video_knee=1.0))
    assert s.meta["curve"] == "video_knee" and 0.80 <= float(s.meta["knee"]) <= 0.95


def test_reference_midtones_sit_at_bt2408() -> None:
    # A clip-curve SDR of scene light x shows x at 203 x cd/m²: the reference must agree on mid-tones.
    scene = np.full((16, 16, 3), 0.25, np.float32)
    ref = reference_nits(scene * 37.0, np.minimum(scene, 1.0))
    np.testing.assert_allclose(ref, 0.25 * 203.0, rtol=1e-4)
    assert float(pq_to_nits(PQ_PEAK)) == pytest.approx(1000.0, rel=1e-4)


def test_perspective_view_of_a_constant_panorama_is_constant() -> None:
    pano = np.full((64, 128, 3), 3.0, np.float32)
    v = perspective_view(pano, (20, 30), fov_deg=90.0, yaw_deg=170.0, pitch_deg=30.0)
    assert v.shape == (20, 30, 3)
    np.testing.assert_allclose(v, 3.0, rtol=1e-5)


def test_split_keeps_families_on_one_side() -> None:
    scenes = [Scene("a.exr", "photo", "fam"), Scene("b.exr", "photo", "fam"), Scene("c.exr", "photo", "")]
    train, val = split_scenes(scenes, ("a.exr",))
    assert {s.file for s in val} == {"a.exr", "b.exr"} and [s.file for s in train] == ["c.exr"]
    with pytest.raises(ValueError, match="not in the manifest"):
        split_scenes(scenes, ("zzz.exr",))


def test_wide_batches_are_video_frames_seen_as_the_runtime_sees_them() -> None:
    """16:9 views through fast mode's squeezed view, square ones as before; no share keeps the old batches."""
    from service.operators.mqn import processing_size

    bank = SceneBank.__new__(SceneBank)  # one in-memory photo instead of the shared EXRs
    bank.scenes = [Scene("synthetic.exr", "photo", "")]
    bank.images = [np.exp(np.random.default_rng(1).normal(-1.0, 1.5, (400, 700, 3))).astype(np.float16)]
    bank.bright = [None]
    cfg = SynthesisConfig()
    shapes = set()
    for sdr, linear, target in islice(batches(bank, 2, (96, 96), (32, 64), cfg, 3, 0.5), 12):
        assert linear.shape == target.shape and sdr.shape[0] == 2
        shapes.add((sdr.shape[1:3], linear.shape[1:3]))
    assert ((32, 32), (96, 96)) in shapes and ((64, 64), (96, 96)) in shapes
    assert (processing_size(56, 96, 64), (56, 96)) in shapes  # 96 px wide at 16:9, seen 2:1 as at run time
    assert {linear for _, linear in shapes} == {(96, 96), (56, 96)}
    plain = [linear.shape for _, linear, _ in islice(batches(bank, 2, (96, 96), (32, 64), cfg, 3), 6)]
    assert all(shape[1:3] == (96, 96) for shape in plain)


def _bank_of(images: list[np.ndarray]) -> SceneBank:
    """A bank of in-memory photos, as SceneBank builds it, without the shared EXRs."""
    bank = SceneBank.__new__(SceneBank)
    bank.scenes = [Scene(f"synthetic_{i}.exr", "photo", "") for i in range(len(images))]
    bank.images = [img.astype(np.float16) for img in images]
    bank.bright = [None] * len(images)
    return bank


def test_light_source_stops_tell_a_lamp_in_the_dark_from_a_sky() -> None:
    """Stops from p90 to p99.9: 0 for a flat field, large for a lamp in a dark room, small under a sky."""
    flat = np.full((100, 100, 3), 0.3, np.float32)
    lamp_room = flat.copy()
    lamp_room[40:44, 40:44] = 300.0  # 0.16 % of the area, 10 stops above the room
    sky = flat.copy()
    sky[:30] = 40.0  # the top 30 %: the sky is the 90th percentile too
    assert light_source_stops(flat, False) == pytest.approx(0.0, abs=1e-6)
    assert light_source_stops(lamp_room, False) == pytest.approx(np.log2(1000.0), abs=0.01)
    assert light_source_stops(sky, False) == pytest.approx(0.0, abs=1e-6)
    # A panorama weighs rows by solid angle: a lamp row near the pole covers less of the scene.
    pano = np.full((180, 360, 3), 0.3, np.float32)
    pano[1, :] = 300.0  # 0.56 % of the rows, 0.03 % of the sphere
    assert light_source_stops(pano, True) == pytest.approx(0.0, abs=1e-6)
    assert light_source_stops(pano, False) == pytest.approx(np.log2(1000.0), abs=0.01)


def test_scene_weight_power_draws_scenes_by_their_light_source_stops() -> None:
    """0 keeps the uniform draw (the same scenes as before); > 0 draws lamp scenes more often."""
    flat = np.full((64, 64, 3), 0.3, np.float32)
    lamp_room = flat.copy()
    lamp_room[30:33, 30:33] = 0.3 * 2.0**8  # 0.22 % of the area, 8 stops above the room
    bank = _bank_of([flat, lamp_room])
    np.testing.assert_allclose(bank.scene_shares(0.0), [0.5, 0.5])
    np.testing.assert_allclose(bank.scene_shares(1.0), [1 / 9, 8 / 9], atol=1e-3)

    def drawn(cfg: SynthesisConfig) -> list[str]:
        rng = np.random.default_rng(5)
        return [str(bank.sample(rng, (16, 16), cfg).meta["scene"]) for _ in range(200)]

    uniform = drawn(SynthesisConfig())
    for seed in range(20):  # power 0 draws as before scene weights existed: the generator's integers first
        first = bank.sample(np.random.default_rng(seed), (16, 16), SynthesisConfig()).meta["scene"]
        assert first == bank.scenes[int(np.random.default_rng(seed).integers(2))].file
    weighted = drawn(SynthesisConfig(scene_weight_power=1.0))
    assert 0.35 < uniform.count("synthetic_1.exr") / 200 < 0.65
    assert weighted.count("synthetic_1.exr") / 200 > 0.8


@needs_data
def test_real_split_has_no_shared_family_and_views_are_finite() -> None:
    train, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    fam_t = {s.split_key for s in train}
    assert not fam_t & {s.split_key for s in val}
    assert len(val) >= 6 and len(train) >= 40
    bank = SceneBank(DEFAULT_DATA_DIR, val[:2])
    s = bank.sample(np.random.default_rng(0), (32, 48), SynthesisConfig())
    assert np.isfinite(s.target).all() and s.sdr.shape == (32, 48, 3)


def test_manifest_row_order_does_not_change_the_scenes_or_their_order(tmp_path: Path) -> None:
    # The evaluation cases are drawn scene by scene from one seeded stream: a re-sorted manifest must give
    # the very same scene sequence, or the model card's table silently changes.
    header = "file,kind,family\n"
    rows = ["b.exr,photo,\n", "a.exr,equirect-panorama (photo),fam\n", "c.exr,photo,fam\n"]
    for name, order in (("one", rows), ("two", rows[::-1])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "MANIFEST.csv").write_text(header + "".join(order))
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert one == two
    assert [s.file for s in one] == ["a.exr", "b.exr", "c.exr"]


def test_delivery_turns_a_small_clipped_lamp_into_a_near_white_core_that_stays_bright() -> None:
    # A 4 x 4 lamp in a dark 96 x 96 view, delivered 3x smaller: the scaler averages the coded SDR, so the
    # lamp's core is no longer clipped, while the reference (linear average) stays far above SDR white.
    scene = np.full((96, 96, 3), 0.02, np.float32)
    scene[42:46, 42:46] = 400.0
    quiet = SynthesisConfig(ev_sigma=0.0, p_jpeg=0.0, p_noise=0.0, p_saturation=0.0)
    direct = synthesize(scene[::3, ::3], np.random.default_rng(1), quiet)
    delivered = synthesize(scene, np.random.default_rng(1), quiet, deliver_factor=3)
    assert delivered.sdr.shape == direct.sdr.shape == (32, 32, 3)
    assert delivered.meta["deliver"] == 3.0 and "deliver" not in direct.meta
    core = np.unravel_index(np.argmax(delivered.sdr[..., 1]), (32, 32))
    assert 150 <= delivered.sdr[core][1] < 255
    target, base = pq_to_nits(delivered.target[core]), delivered.linear[core]
    assert (target >= 3.0 * base).all()


def test_emitters_go_into_the_dark_half_only_and_become_bright_unclipped_cores() -> None:
    # Left half dark street, right half bright sky: every added source lands on the dark side, and once
    # delivered its core is near white but unclipped while its target stays well above the placement.
    scene = np.full((192, 384, 3), 0.02, np.float32)
    scene[:, 192:] = 2.0
    cfg = SynthesisConfig(p_emitters=1.0, deliver_factor=2)
    lit, count = add_emitters(scene, np.random.default_rng(3), cfg, factor=2)
    added = (lit - scene).max(axis=-1)
    assert count > 0 and added[:, :192].max() > 10.0
    assert not added[:, 200:].any()
    np.testing.assert_array_equal(add_emitters(scene, np.random.default_rng(3), cfg, 2)[0], lit)
    quiet = SynthesisConfig(ev_sigma=0.0, p_jpeg=0.0, p_noise=0.0, p_saturation=0.0)
    s = synthesize(lit, np.random.default_rng(1), quiet, deliver_factor=2)
    y = s.linear.mean(axis=-1) / 203.0
    cores = (y > 0.5) & (y < 0.97)
    cores[:, 90:] = False
    assert cores.any()
    assert np.median(pq_to_nits(s.target[cores]).mean(axis=-1) / (y[cores] * 203.0)) > 2.0


def test_emitter_size_follows_its_range() -> None:
    """Lamps of a few delivered pixels (resolved by a 512 px view) as well as sub-pixel ones."""
    scene = np.full((192, 192, 3), 0.02, np.float32)
    scene[:, 96:] = 0.5  # a brighter half, so the other is dark against the view's key

    def lit_pixels(sigma: tuple[float, float]) -> float:
        cfg = SynthesisConfig(p_emitters=1.0, emitter_sigma=sigma)
        lit, count = add_emitters(scene, np.random.default_rng(4), cfg, factor=2)
        return float(((lit - scene).max(axis=-1) > 1.0).sum()) / max(count, 1)

    small, large = lit_pixels((0.5, 0.5)), lit_pixels((3.0, 3.0))
    assert small > 0 and large > 10 * small


def test_emitter_strings_follow_their_range() -> None:
    """A larger view can be given more strings, for the same share of lamp pixels as a 384² view."""
    scene = np.full((384, 384, 3), 0.02, np.float32)
    scene[:, 192:] = 0.5

    def sources(strings: tuple[int, int]) -> list[int]:
        cfg = SynthesisConfig(p_emitters=1.0, emitter_strings=strings)
        return [add_emitters(scene, np.random.default_rng(seed), cfg, factor=2)[1] for seed in range(12)]

    few, many = sources((1, 1)), sources((8, 8))
    assert sum(many) > 4 * sum(few) > 0
    # The default is the range every earlier run drew from: the same sources as before the option.
    np.testing.assert_array_equal(sources((2, 6)), sources(SynthesisConfig().emitter_strings))


def test_a_view_without_dark_parts_gets_no_emitters() -> None:
    scene = np.full((96, 96, 3), 1.0, np.float32)
    lit, count = add_emitters(scene, np.random.default_rng(0), SynthesisConfig(p_emitters=1.0), factor=2)
    assert count == 0 and lit is scene


@needs_data
def test_lamp_targets_reports_ratios_of_near_white_pixels_per_context() -> None:
    from models.mqn.lamp_targets import band_ratios, summary

    _, val = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, val[:2])
    ratios = band_ratios(bank, SynthesisConfig(p_bright=1.0), views=3, seed=0, size=96)
    assert set(ratios) == {"dark", "bright", "peak"}
    assert all(r > 0 for v in ratios.values() for r in v)
    assert summary([]) == {"pixels": 0, "median": None, "share_ge_3": None}
    assert summary([1.0, 2.0, 4.0]) == {"pixels": 3, "median": 2.0, "share_ge_3": round(1 / 3, 3)}
