"""Keras side: layer config round trips, save/load, per-frame independence, edge padding, the training-time
slicing against the runtime kernel, and the smoke training run."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.models.markers import needs_data, needs_tf

pytestmark = [pytest.mark.train, needs_tf]

SMALL = {"width": 0.35, "decoder_channels": [16], "head_channels": 8, "attention": "ca"}


def test_custom_layers_round_trip_their_config() -> None:
    from models.mqn.layers import CellStats, ChannelAttention, CurveKnots, CurveSlice, EdgePad, GlobalStats

    knots = (0.0, 10.0, 100.0, 203.0)
    layers = (
        ChannelAttention(0.25),
        CurveKnots(knots, 3.0),
        CurveKnots(knots, 3.0, paired=True),
        CurveKnots(knots, 3.0, paired=True, toe_knots=1),
        CurveSlice(knots, 0.5, 800.0),
        CurveSlice(knots, 0.5, 800.0, paired=True),
        CurveSlice(knots, 0.5, 800.0, paired=True, peak_ratio=2.0),
        CurveSlice(knots, 0.5, 800.0, paired=True, peak_ratio=2.0, saturation=True),
        EdgePad(),
        GlobalStats(8),
        GlobalStats(8, tails=True),
        CellStats(2.0),
    )
    for layer in layers:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_backbone_features_of_a_flat_field_are_flat_to_the_border() -> None:
    """Edge padding: no feature knows where the frame ends (zero padding darkened the old model's borders)."""
    from models.mqn.model import MQNConfig, build_backbone

    backbone = build_backbone(MQNConfig.from_json(SMALL))
    flat = np.full((1, 96, 160, 3), 0.4, np.float32)
    feats = backbone(flat).numpy()
    assert np.abs(feats - feats[:, :1, :1]).max() < 1e-5
    rows = np.broadcast_to(np.linspace(0.1, 0.9, 96, dtype=np.float32)[None, :, None, None], (1, 96, 160, 3))
    feats = backbone(np.ascontiguousarray(rows)).numpy()
    assert np.abs(feats - feats[:, :, :1]).max() < 1e-5  # every row stays uniform


def test_zero_initialised_model_is_the_bt2408_placement() -> None:
    from models.mqn.model import MQNConfig, build_mqn

    model, _, _ = build_mqn(MQNConfig.from_json(SMALL))
    rng = np.random.default_rng(0)
    linear = rng.random((2, 96, 128, 3)).astype(np.float32) * 203.0
    out, _ = model([rng.random((2, 32, 64, 3)).astype(np.float32), linear])
    np.testing.assert_allclose(out.numpy(), linear, rtol=2e-3, atol=0.02)


@pytest.mark.parametrize(
    ("paired", "ratio", "saturation"),
    [(False, 1.0, False), (True, 1.0, False), (True, 2.0, False), (False, 1.0, True), (True, 2.0, True)],
    ids=["single", "paired", "paired-ratio2", "single-saturation", "paired-saturation"],
)
def test_training_slice_matches_the_runtime_kernel(paired: bool, ratio: float, saturation: bool) -> None:
    """CurveSlice (trained through) and service.operators.curve_grid (served) are the same maths, also with
    a peak curve per cell and the per-pixel peak weight (at either background ratio), and with the
    per-cell saturation (its gamut cap taken in BT.2020 by both)."""
    from models.mqn.layers import CurveSlice
    from models.mqn.model import KNOTS_NITS
    from service.colour.description import ColourDescription
    from service.colour.pq import eotf_inverse_st2084
    from service.operators.curve_grid import CurveSpec, slice_curves

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 360, 400, 3), dtype=np.uint8)  # peak radius 2
    frames[:, 100:103, 50:52] = 250
    knots = np.cumsum(rng.random((2, 3, 5, len(KNOTS_NITS) - 1)) * 0.06, axis=-1).astype(np.float32)
    if paired:
        extra = np.cumsum(rng.random(knots.shape) * 0.02, axis=-1).astype(np.float32)
        knots = np.concatenate([knots, knots + extra], axis=-1)
    if saturation:
        log_sat = rng.uniform(-0.9, 0.9, (*knots.shape[:3], 2)).astype(np.float32)
        knots = np.concatenate([knots, log_sat], axis=-1)
    colour = ColourDescription.still()
    lut = colour.linear_lut(203.0)
    linear709 = lut[frames]
    slicer = CurveSlice(KNOTS_NITS, 0.6, 1000.0, paired=paired, peak_ratio=ratio, saturation=saturation)
    trained = slicer(knots, linear709).numpy() @ colour.to_bt2020_matrix().T
    spec = CurveSpec(KNOTS_NITS, 0.6, 1000.0, paired=paired, peak_ratio=ratio, saturation=saturation)
    served = slice_curves(frames, lut, colour.to_bt2020_matrix(), knots, spec)
    codes = lambda x: np.asarray(eotf_inverse_st2084(np.clip(x, 0, 1e4)), np.float64) * 1023  # noqa: E731
    # The 709 -> 2020 matrix before the peak rule (served) or after it (trained) differs only above the peak.
    assert np.percentile(np.abs(codes(trained) - codes(served)), 99.9) <= 0.5


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"global_path": True},
        {"global_path": True, "peak_guide": True, "saturation": True},
        {"global_path": True, "peak_guide": True, "saturation": True, "cell_stats": True},
    ],
    ids=["local", "global", "global+peak+saturation", "cell-stats"],
)
def test_model_save_load_round_trip_and_frame_independence(tmp_path: Path, extra: dict[str, bool]) -> None:
    """Also with the global path and the peak guide: statistics and weights are per frame."""
    import keras

    from models.mqn.model import MQNConfig, build_mqn

    cfg = MQNConfig.from_json(SMALL | extra)
    assert MQNConfig.from_json(cfg.to_json()) == cfg
    model, _, _ = build_mqn(cfg)
    rng = np.random.default_rng(0)
    sdr = rng.random((2, 64, 96, 3), np.float32)
    linear = rng.random((2, 128, 192, 3), np.float32) * 203.0
    out = model([sdr, linear])[0].numpy()
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again([sdr, linear])[0].numpy(), out, atol=1e-4)
    alone = model([sdr[1:], linear[1:]])[0].numpy()
    np.testing.assert_allclose(alone[0], out[1], atol=1e-4)


def _trained_run(cfg: dict[str, Any], folder: Path, rng: np.random.Generator, spread: float = 0.05) -> Any:
    """A "trained" model (nothing left at its zero initialisation), saved as a run to warm start from."""
    from models.mqn.model import MQNConfig, build_mqn

    config = MQNConfig.from_json(cfg)
    model, _, _ = build_mqn(config)
    for v in model.trainable_variables:
        v.assign(v + rng.normal(0, spread, v.shape).astype(np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(config.to_json()))
    model.save_weights(folder / "best.weights.h5")
    return config, model


def test_warm_start_adds_a_global_path_that_starts_as_a_no_op(tmp_path: Path) -> None:
    """A new head part is zero-initialised: the warm-started model begins exactly where the old one was."""
    from models.mqn.model import MQNConfig, build_mqn
    from models.mqn.train import warm_start

    rng = np.random.default_rng(3)
    old_cfg, old = _trained_run(SMALL, tmp_path, rng)
    new, _, head = build_mqn(MQNConfig.from_json(SMALL | {"global_path": True}))
    warm_start(new, tmp_path)
    assert len(head.inputs) == 2
    sdr = rng.random((2, 64, 96, 3), np.float32)
    linear = rng.random((2, 128, 192, 3), np.float32) * 203.0
    np.testing.assert_allclose(
        new([sdr, linear])[0].numpy(), old([sdr, linear])[0].numpy(), rtol=1e-5, atol=1e-3
    )
    # So does the saturation pair: zero log-saturation is the SDR's own colour.
    saturated, _, _ = build_mqn(MQNConfig.from_json(SMALL | {"global_path": True, "saturation": True}))
    warm_start(saturated, tmp_path)
    np.testing.assert_allclose(
        saturated([sdr, linear])[0].numpy(), new([sdr, linear])[0].numpy(), rtol=1e-5, atol=1e-3
    )
    # The peak curve starts a hair above the base (its rises exp(-6) of the identity's, +0.25 % in PQ, about
    # +1.4 % of light where the weight is 1, as on this noise): a warm start keeps what the base had learned.
    peaked, _, _ = build_mqn(MQNConfig.from_json(SMALL | {"global_path": True, "peak_guide": True}))
    warm_start(peaked, tmp_path)
    np.testing.assert_allclose(
        peaked([sdr, linear])[0].numpy(), old([sdr, linear])[0].numpy(), rtol=2e-2, atol=1e-2
    )
    # A shipped float twin names its architecture beside it (models/artifacts/mqn_float.model.json).
    shipped = tmp_path / "artifacts"
    shipped.mkdir()
    (shipped / "mqn_float.model.json").write_text(json.dumps(old_cfg.to_json()))
    old.save_weights(shipped / "mqn_float.weights.h5")
    twin, _, _ = build_mqn(MQNConfig.from_json(SMALL | {"global_path": True}))
    warm_start(twin, shipped / "mqn_float.weights.h5")
    np.testing.assert_allclose(twin([sdr, linear])[0].numpy(), new([sdr, linear])[0].numpy(), atol=1e-6)
    # The cell statistics enter through a zero-initialised conv: exactly the model without them.
    peaked_cfg = MQNConfig.from_json(SMALL | {"global_path": True, "peak_guide": True})
    (tmp_path / "peaked").mkdir()
    (tmp_path / "peaked" / "model.json").write_text(json.dumps(peaked_cfg.to_json()))
    peaked.save_weights(tmp_path / "peaked" / "best.weights.h5")
    reading, _, head = build_mqn(MQNConfig.from_json(peaked_cfg.to_json() | {"cell_stats": True}))
    warm_start(reading, tmp_path / "peaked")
    assert len(head.inputs) == 3
    np.testing.assert_allclose(
        reading([sdr, linear])[0].numpy(), peaked([sdr, linear])[0].numpy(), rtol=1e-5, atol=1e-3
    )


@pytest.mark.parametrize("paired", [False, True])
def test_a_pinned_toe_keeps_the_placement_in_the_shadows_and_the_curve_monotone(paired: bool) -> None:
    """Whatever the slopes, the first knots are the identity's; the knots after them never fall below."""
    from models.mqn.layers import CurveKnots, knot_codes

    knots = (0.0, 1.0, 3.0, 8.0, 16.0, 203.0)
    segments = len(knots) - 1
    slopes = np.random.default_rng(5).normal(0.0, 2.0, (3, 2, 2, segments * (2 if paired else 1)))
    slopes[0] = -4.0  # curves far below the placement: the knot after the toe is lifted to it
    out = CurveKnots(knots, 3.5, paired=paired, toe_knots=2)(slopes.astype(np.float32)).numpy()
    codes = knot_codes(knots)
    identity = codes[1:3] - codes[0]
    for curve in np.split(out, 2 if paired else 1, axis=-1):
        np.testing.assert_allclose(curve[..., :2], np.broadcast_to(identity, curve[..., :2].shape), atol=1e-6)
        assert (np.diff(curve, axis=-1) >= -1e-7).all()
        assert (curve[0, ..., 2:] >= identity[-1] - 1e-7).all()
    free = CurveKnots(knots, 3.5, paired=paired)(slopes.astype(np.float32)).numpy()
    assert not np.allclose(free[..., :2], out[..., :2])  # the pin did something
    # The runtime's shadows=sdr pins a free model's curves the same way.
    from service.operators.curve_grid import CurveSpec, pinned_toe

    spec = CurveSpec(knots_nits=knots, floor=0.6, peak_nits=1000.0, paired=paired)
    np.testing.assert_allclose(pinned_toe(free, spec), out, atol=1e-6)
    # It pins by light, not by count: with knots below 1 cd/m² every knot up to 3 cd/m² is held.
    finer = (0.0, 0.1, 0.3, 1.0, 3.0, 8.0, 203.0)
    finer_slopes = np.random.default_rng(6).normal(0.0, 2.0, (3, 2, 2, 6 * (2 if paired else 1)))
    finer_slopes = finer_slopes.astype(np.float32)
    finer_free = CurveKnots(finer, 3.5, paired=paired)(finer_slopes).numpy()
    np.testing.assert_allclose(
        pinned_toe(finer_free, replace(spec, knots_nits=finer)),
        CurveKnots(finer, 3.5, paired=paired, toe_knots=4)(finer_slopes).numpy(),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="toe_knots"):
        CurveKnots(knots, 3.5, toe_knots=segments)


@pytest.mark.parametrize("paired", [False, True])
def test_a_toe_shape_moves_the_darkest_knots_and_nothing_above_the_toe(paired: bool) -> None:
    """Shape logits share out the toe's rise: the knots from its top up, and the curve's monotony, stay."""
    from models.mqn.layers import CurveKnots

    knots = (0.0, 0.1, 0.3, 1.0, 3.0, 8.0, 203.0)
    slopes = np.random.default_rng(7).normal(0.0, 1.0, (3, 2, 2, 6 * (2 if paired else 1))).astype(np.float32)
    plain = CurveKnots(knots, 3.5, paired=paired)(slopes).numpy()
    shaped = CurveKnots(knots, 3.5, paired=paired, toe_shape_nits=1.0)
    zero = np.zeros((3, 2, 2, 3), np.float32)
    np.testing.assert_allclose(shaped(np.concatenate([slopes, zero], -1)).numpy(), plain, atol=1e-6)
    logits = np.random.default_rng(8).normal(0.0, 2.0, zero.shape).astype(np.float32)
    out = shaped(np.concatenate([slopes, logits], -1)).numpy()
    curves = 2 if paired else 1
    for got, was in zip(np.split(out, curves, -1), np.split(plain, curves, -1), strict=True):
        np.testing.assert_allclose(got[..., 2:], was[..., 2:], atol=1e-6)  # 1 cd/m² and up: unchanged
        assert not np.allclose(got[..., :2], was[..., :2])
        assert (np.diff(got, axis=-1) > 0).all() and (got[..., 0] > 0).all()
    with pytest.raises(ValueError, match="toe_shape_nits"):
        CurveKnots(knots, 3.5, toe_shape_nits=0.1)


def test_warm_start_adds_a_toe_shape_that_starts_as_a_no_op(tmp_path: Path) -> None:
    """A run with refined knots and a toe shape begins at its source's output, exactly."""
    from models.mqn.model import KNOTS_NITS, MQNConfig, build_mqn
    from models.mqn.train import warm_start

    rng = np.random.default_rng(9)
    old_cfg, old = _trained_run(SMALL | {"global_path": True, "peak_guide": True}, tmp_path, rng, spread=0.3)
    finer = sorted({*KNOTS_NITS, 0.1, 0.3})
    new, _, head = build_mqn(
        MQNConfig.from_json(old_cfg.to_json() | {"knots_nits": finer, "toe_shape_nits": 1.0})
    )
    warm_start(new, tmp_path)
    assert head.get_layer("head_toe_shape").get_weights()[0].shape[-1] == 3
    sdr = rng.random((2, 64, 96, 3), np.float32)
    linear = (rng.random((2, 128, 192, 3), np.float32) ** 3) * 203.0
    np.testing.assert_allclose(
        new([sdr, linear])[0].numpy(), old([sdr, linear])[0].numpy(), rtol=1e-4, atol=1e-4
    )


def test_global_tails_count_crushed_shadows_and_hard_clips() -> None:
    """The tail shares tell a hard clip from a soft shoulder and a crushed toe from a kept one."""
    from models.mqn.layers import TAIL_CLIPPED_CODES, TAIL_DARK_CODES, GlobalStats

    frame = np.full((2, 10, 10, 3), 0.5, np.float32)
    frame[0, :3] = 1.0  # 30 % clipped white
    frame[1, :3] = 0.95  # a soft shoulder's near-white: not clipped
    frame[0, 3:5] = 0.0  # 20 % crushed to black
    frame[1, 3:5] = 0.15  # a kept toe: darkish, above the first edges
    stats = GlobalStats(4, tails=True)(np.zeros((2, 2, 2, 5), np.float32), frame).numpy()
    dark = stats[:, 5 + 8 : 5 + 8 + len(TAIL_DARK_CODES)]
    clipped = stats[:, 5 + 8 + len(TAIL_DARK_CODES) :]
    np.testing.assert_allclose(dark[0], 0.2, atol=1e-6)
    np.testing.assert_allclose(dark[1], [0.0, 0.0, 0.0, 0.2], atol=1e-6)  # 0.15 is below only the 0.2 edge
    np.testing.assert_allclose(clipped[0], 0.3, atol=1e-6)
    np.testing.assert_allclose(clipped[1], 0.0, atol=1e-6)
    assert len(clipped[0]) == 2 * len(TAIL_CLIPPED_CODES)


def test_warm_start_grows_the_global_path_to_read_the_tails(tmp_path: Path) -> None:
    """The tails reach the head through zero rows of the global layer: the old model's output, exactly."""
    from models.mqn.model import MQNConfig, build_mqn
    from models.mqn.train import warm_start

    rng = np.random.default_rng(4)
    old_cfg, old = _trained_run(SMALL | {"global_path": True}, tmp_path, rng)
    new, _, head = build_mqn(MQNConfig.from_json(old_cfg.to_json() | {"global_tails": True}))
    warm_start(new, tmp_path)
    grown = head.get_layer("global_fc0").get_weights()[0]
    assert grown.shape[0] > old.get_layer("mqn_head").get_layer("global_fc0").get_weights()[0].shape[0]
    sdr = rng.random((2, 64, 96, 3), np.float32)
    linear = rng.random((2, 128, 192, 3), np.float32) * 203.0
    np.testing.assert_allclose(new([sdr, linear])[0].numpy(), old([sdr, linear])[0].numpy(), atol=1e-5)


def test_warm_start_adds_fine_skips_that_start_as_a_no_op(tmp_path: Path) -> None:
    """The finer encoder levels enter through a zero-initialised projection: the old model's output, exactly,
    for a grid at 1/16 (three levels pooled) and at 1/8 (two)."""
    from models.mqn.model import MQNConfig, build_mqn
    from models.mqn.train import warm_start

    rng = np.random.default_rng(5)
    for decoder in ([16], [16, 16]):
        folder = tmp_path / str(len(decoder))
        old_cfg, old = _trained_run(SMALL | {"decoder_channels": decoder}, folder, rng)
        new, backbone, _ = build_mqn(MQNConfig.from_json(old_cfg.to_json() | {"fine_skips": True}))
        warm_start(new, folder)
        pools = [layer for layer in backbone.layers if layer.name.endswith("_pool") and "fine" in layer.name]
        assert len(pools) == 4 - len(decoder)
        sdr = rng.random((2, 64, 96, 3), np.float32)
        linear = rng.random((2, 128, 192, 3), np.float32) * 203.0
        np.testing.assert_allclose(new([sdr, linear])[0].numpy(), old([sdr, linear])[0].numpy(), atol=1e-5)
        # ... and once trained, the projection does change the features.
        proj = backbone.get_layer("fine_proj")
        proj.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in proj.get_weights()])
        assert not np.allclose(new([sdr, linear])[1].numpy(), old([sdr, linear])[1].numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="coarser than 1/2"):
        build_mqn(MQNConfig.from_json(SMALL | {"decoder_channels": [16, 16, 16, 16], "fine_skips": True}))


def test_warm_start_refines_the_curve_knots_without_changing_the_curves(tmp_path: Path) -> None:
    """New knots between the old ones start on the old segment's line: the old model's output, exactly."""
    from models.mqn.model import KNOTS_NITS, MQNConfig, build_mqn
    from models.mqn.train import warm_start

    rng = np.random.default_rng(6)
    old_cfg, old = _trained_run(SMALL | {"global_path": True, "peak_guide": True}, tmp_path, rng, spread=0.3)
    finer = sorted({*KNOTS_NITS, 0.1, 0.3, 120.0})
    new, _, head = build_mqn(MQNConfig.from_json(old_cfg.to_json() | {"knots_nits": finer}))
    warm_start(new, tmp_path)
    assert head.get_layer("head_log_slopes").get_weights()[0].shape[-1] == len(finer) - 1
    sdr = rng.random((2, 64, 96, 3), np.float32)
    linear = (rng.random((2, 128, 192, 3), np.float32) ** 3) * 203.0  # many deep shadows
    np.testing.assert_allclose(
        new([sdr, linear])[0].numpy(), old([sdr, linear])[0].numpy(), rtol=1e-4, atol=1e-4
    )
    # Knots that do not refine the old ones (one dropped) cannot be mapped: those layers start fresh.
    dropped = finer[:3] + finer[4:]
    coarser, _, coarse_head = build_mqn(MQNConfig.from_json(old_cfg.to_json() | {"knots_nits": dropped}))
    warm_start(coarser, tmp_path)
    assert not coarse_head.get_layer("head_log_slopes").get_weights()[0].any()


def test_warm_start_can_leave_a_layer_fresh(tmp_path: Path) -> None:
    """``init_fresh`` restarts a layer its source never trained: the peak curve at ``peak_init``, not -6."""
    from models.mqn.model import MQNConfig, build_mqn
    from models.mqn.train import warm_start

    peaked = SMALL | {"global_path": True, "peak_guide": True}
    old_cfg = MQNConfig.from_json(peaked)
    old, _, old_head = build_mqn(old_cfg)
    (tmp_path / "model.json").write_text(json.dumps(old_cfg.to_json()))
    old.save_weights(tmp_path / "best.weights.h5")
    np.testing.assert_array_equal(old_head.get_layer("head_peak_log_slopes").get_weights()[1], -6.0)
    for fresh, bias in ((("head_peak_log_slopes",), -2.0), ((), -6.0)):
        model, _, head = build_mqn(MQNConfig.from_json(peaked | {"peak_init": -2.0}))
        warm_start(model, tmp_path, fresh=fresh)
        np.testing.assert_array_equal(head.get_layer("head_peak_log_slopes").get_weights()[1], bias)
    with pytest.raises(ValueError, match="head_peak_slopes"):
        warm_start(model, tmp_path, fresh=("head_peak_slopes",))


def test_soft_saturation_bound_keeps_a_gradient_at_the_floor() -> None:
    """With the slicing's clip alone, a log-saturation pushed below 0 gets no gradient and never returns
    (``mqn_v14``'s pair: below 0 in every cell); the sigmoid bound stays in range and keeps one there."""
    import tensorflow as tf

    from models.mqn.model import MQNConfig, build_mqn

    rng = np.random.default_rng(4)
    sdr = rng.random((1, 64, 96, 3), np.float32)
    inputs = [tf.constant(sdr), tf.constant(np.ones((1, 128, 192, 3), np.float32))]
    for soft in (False, True):
        cfg = MQNConfig.from_json(SMALL | {"global_path": True, "saturation": True, "saturation_soft": soft})
        model, _, head = build_mqn(cfg)
        conv = head.get_layer("head_log_saturation")
        kernel, bias = conv.get_weights()
        log_sat = model(inputs)[1][..., -2:].numpy()
        assert log_sat.min() >= 0.0 and log_sat.max() <= (0.02 * 0.7 + 1e-6 if soft else 0.0)
        conv.set_weights([kernel, bias - 3.0])  # pushed below the floor, as the mid-tones push it
        with tf.GradientTape() as tape:
            out = model(inputs)[1][..., -2:]
            total = tf.reduce_sum(tf.clip_by_value(out, *cfg.saturation_range))  # as the slicing bounds it
        grad = tape.gradient(total, conv.trainable_variables[1]).numpy()
        assert (np.abs(grad).min() > 0.0) == soft
        in_range = float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 0.7
        assert in_range == soft  # the clip's raw values leave the range; the sigmoid's cannot


@needs_data
def test_smoke_training_runs_checkpoints_and_resumes(tmp_path: Path) -> None:
    from models.mqn.data import REPO_ROOT
    from models.mqn.train import TrainConfig, train

    smoke = REPO_ROOT / "models" / "mqn" / "configs" / "smoke.json"
    # The head at its own rate: a second optimizer, checkpointed and resumed with the first.
    roots = {
        "checkpoint_root": str(tmp_path / "ck"),
        "log_root": str(tmp_path / "logs"),
        "lr_scale": {"head_": 10.0},
    }
    first = train(TrainConfig.load(smoke, roots | {"steps": 3, "val_every": 3}))
    assert first["steps"] == 3 and np.isfinite(first["val_pq_psnr"])
    run = tmp_path / "ck" / "smoke"
    assert (run / "best.weights.h5").exists() and (run / "model.json").exists()
    second = train(TrainConfig.load(smoke, roots | {"steps": 4, "val_every": 100}))
    assert second["resumed_from"] == 3 and second["steps"] == 4
    lines = (tmp_path / "logs" / "smoke" / "train.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    from models.mqn.train import TrainConfig

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"stpes": 3}))
    with pytest.raises(ValueError, match="stpes"):
        TrainConfig.load(p)


def test_init_fresh_needs_a_warm_start(tmp_path: Path) -> None:
    from models.mqn.train import TrainConfig

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"init_fresh": ["head_peak_log_slopes"]}))
    with pytest.raises(ValueError, match="init_from is not set"):
        TrainConfig.load(p)


def _saved_run(root: Path, name: str, model_json: dict, seed: int) -> list:
    """A run folder as training leaves it (random weights), for the soup; returns the weights it holds."""
    from models.mqn.model import MQNConfig, build_mqn

    model, _, _ = build_mqn(MQNConfig.from_json(model_json))
    rng = np.random.default_rng(seed)
    for var in model.weights:
        var.assign(rng.normal(size=var.shape).astype(var.dtype))
    run = root / "ck" / name
    run.mkdir(parents=True)
    model.save_weights(run / "best.weights.h5")
    (run / "model.json").write_text(json.dumps(MQNConfig.from_json(model_json).to_json()))
    (run / "config.json").write_text(json.dumps({"run": name, "val_scenes": ["a.exr"], "log_root": "logs"}))
    return [v.numpy() for v in model.weights]


def test_soup_is_the_mean_of_its_ingredients_and_refuses_other_architectures(tmp_path: Path) -> None:
    from models.mqn.export import load_trained
    from models.mqn.soup import soup

    first = _saved_run(tmp_path, "a", SMALL, 1)
    second = _saved_run(tmp_path, "b", SMALL, 2)
    roots = {"checkpoint_root": str(tmp_path / "ck"), "log_root": str(tmp_path / "logs")}
    summary = soup({"run": "ab", "ingredients": ["a", "b"]} | roots)
    assert summary["soup"]["ingredients"] == {"a": 0.5, "b": 0.5}
    _, mixed, _, _ = load_trained(tmp_path / "ck" / "ab")
    for got, x, y in zip(mixed.weights, first, second, strict=True):
        np.testing.assert_allclose(got.numpy(), (x + y) / 2, rtol=1e-6, atol=1e-6)
    soup({"run": "a3b", "ingredients": {"a": 3.0, "b": 1.0}} | roots)
    _, weighted, _, _ = load_trained(tmp_path / "ck" / "a3b")
    for got, x, y in zip(weighted.weights, first, second, strict=True):
        np.testing.assert_allclose(got.numpy(), 0.75 * x + 0.25 * y, rtol=1e-6, atol=1e-6)
    assert json.loads((tmp_path / "ck" / "ab" / "config.json").read_text())["run"] == "ab"
    assert json.loads((tmp_path / "logs" / "ab" / "summary.json").read_text())["soup"]["weights"] == "best"
    # A run saved before a switch existed has no key for it; at its default it is the same network.
    older = _saved_run(tmp_path, "old", SMALL, 4)
    arch = json.loads((tmp_path / "ck" / "old" / "model.json").read_text())
    del arch["toe_knots"]
    (tmp_path / "ck" / "old" / "model.json").write_text(json.dumps(arch))
    soup({"run": "a_old", "ingredients": ["a", "old"]} | roots)
    _, with_old, _, _ = load_trained(tmp_path / "ck" / "a_old")
    np.testing.assert_allclose(with_old.weights[0].numpy(), (first[0] + older[0]) / 2, rtol=1e-6, atol=1e-6)
    _saved_run(tmp_path, "wide", SMALL | {"head_channels": 16}, 3)
    with pytest.raises(ValueError, match="another architecture"):
        soup({"run": "bad", "ingredients": ["a", "wide"]} | roots)
    with pytest.raises(ValueError, match="positive share"):
        soup({"run": "bad", "ingredients": {"a": 1.0, "b": 0.0}} | roots)
    with pytest.raises(ValueError, match="at least two"):
        soup({"run": "bad", "ingredients": ["a"]} | roots)


def test_peak_loss_weight_counts_only_the_pixels_of_the_peak_curve() -> None:
    """A lamp on dark ground: the same error costs more with ``loss.peak`` only through the lamp's pixels."""
    import tensorflow as tf

    from models.mqn.losses import LossWeights, mqn_loss

    linear = np.full((1, 90, 160, 3), 2.0, np.float32)
    linear[:, 20:22, 20:22] = 150.0
    knots = tf.zeros((1, 3, 5, 24))
    target = tf.zeros((1, 90, 160, 3))

    def total(peak: float, lamp_error: bool) -> float:
        out = linear.copy()
        if lamp_error:
            out[:, 20:22, 20:22] *= 3.0
        else:
            out[:, 60:62, 60:62] *= 3.0
        base = mqn_loss(target, tf.constant(linear), knots, tf.constant(linear), LossWeights(peak=peak), 2.0)
        err = mqn_loss(target, tf.constant(out), knots, tf.constant(linear), LossWeights(peak=peak), 2.0)
        return float(err[0]) - float(base[0])

    assert total(8.0, lamp_error=False) == pytest.approx(total(0.0, lamp_error=False), rel=1e-4)
    assert total(8.0, lamp_error=True) > 2.0 * total(0.0, lamp_error=True)


def test_shadow_weight_counts_only_the_darkest_pixels() -> None:
    """``loss.shadow`` weighs an error in the SDR's shadows (full at 1 % of white, none from 2 %) and leaves
    the same error in the mid-tones as it was."""
    import tensorflow as tf

    from models.mqn.losses import LossWeights, mqn_loss, shadow_mask

    linear = np.full((1, 60, 80, 3), 60.0, np.float32)  # mid-tones: 0.3 of SDR white
    linear[:, :, :20] = 1.0  # 0.5 % of white
    w = LossWeights(shadow=4.0)
    nits = np.array([0.5, 2.03, 3.045, 4.06, 60.0], np.float32)[None, None, :, None] * np.ones(3, np.float32)
    ramp = shadow_mask(tf.constant(nits), w)
    np.testing.assert_allclose(ramp.numpy().ravel(), [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-5)
    knots = tf.zeros((1, 3, 5, 24))
    target = tf.zeros((1, 60, 80, 3))

    def extra(weights: LossWeights, columns: slice) -> float:
        out = linear.copy()
        out[:, :, columns] *= 2.0
        base = mqn_loss(target, tf.constant(linear), knots, tf.constant(linear), weights)
        err = mqn_loss(target, tf.constant(out), knots, tf.constant(linear), weights)
        return float(err[0]) - float(base[0])

    mid = slice(40, 60)
    assert extra(w, mid) == pytest.approx(extra(LossWeights(), mid), rel=1e-4)
    assert extra(w, slice(0, 20)) > 3.0 * extra(LossWeights(), slice(0, 20))


def test_training_cell_statistics_match_the_runtime() -> None:
    """CellStats (trained with) and service.operators.cell_stats (served) give the same numbers on frames
    that are a whole number of cells, as training views are."""
    from models.mqn.layers import CellStats
    from service.colour.description import ColourDescription
    from service.operators.cell_stats import cell_stats
    from service.operators.curve_grid import peak_light

    rng = np.random.default_rng(8)
    frames = (rng.random((2, 96, 160, 3)) ** 3 * 255).astype(np.uint8)
    frames[:, 40, 10:150:7] = 252
    colour = ColourDescription.still()
    lut = colour.linear_lut(203.0)
    served = cell_stats(peak_light(frames, lut, colour.to_bt2020_matrix(), 2.0, cells_across=10), (6, 10))
    trained = CellStats(2.0)(lut[frames], np.zeros((2, 6, 10, 1), np.float32)).numpy()
    assert served.max() > 0.2
    np.testing.assert_allclose(trained, served, atol=1e-4)


def test_cell_statistics_need_a_global_path_and_a_peak_guide() -> None:
    from models.mqn.model import MQNConfig, build_mqn

    for extra in ({"cell_stats": True}, {"cell_stats": True, "global_path": True}):
        with pytest.raises(ValueError, match="cell_stats"):
            build_mqn(MQNConfig.from_json(SMALL | extra))


def test_global_aux_targets_are_the_stops_of_shadows_and_clipped_areas() -> None:
    import tensorflow as tf

    from models.mqn.layers import pq_encode_tf
    from models.mqn.losses import global_aux_loss, global_aux_targets

    linear = np.full((2, 32, 32, 3), 50.0, np.float32)
    linear[:, :16] = 1.0  # shadows, half of each frame
    linear[0, 16:20] = 203.0  # frame 0 has a clipped area (12.5 %), frame 1 none
    ref = linear.copy()
    ref[:, :16] = 4.0  # the scene's shadows were 2 stops above where the SDR put them
    ref[0, 16:20] = 203.0 * 2**1.5  # its clipped area 1.5 stops above white
    target_pq = pq_encode_tf(tf.constant(ref))
    targets, valid = global_aux_targets(tf.constant(linear), target_pq)
    np.testing.assert_allclose(targets.numpy()[:, 0], 2.0, atol=0.01)
    np.testing.assert_allclose(targets.numpy()[0, 1], 1.5, atol=0.01)
    np.testing.assert_array_equal(valid.numpy(), [[1.0, 1.0], [1.0, 0.0]])
    # Frame 1 has no clipped area: whatever is predicted for it is left out.
    right = tf.constant([[2.0, 1.5], [2.0, 99.0]])
    assert float(global_aux_loss(right, tf.constant(linear), target_pq)) < 1e-3
    wrong = tf.constant([[2.0, 0.5], [2.0, 99.0]])
    np.testing.assert_allclose(
        float(global_aux_loss(wrong, tf.constant(linear), target_pq)), 1 / 3, atol=0.01
    )


def test_global_aux_is_an_output_of_training_only() -> None:
    """The served head is the model without the auxiliary layer and gives the training model's knots."""
    import keras

    from models.mqn.model import MQNConfig, build_mqn

    cfg = SMALL | {"global_path": True, "peak_guide": True}
    model, backbone, head = build_mqn(MQNConfig.from_json(cfg | {"global_aux": True}))
    assert len(model.outputs) == 3 and len(head.outputs) == 1
    assert "global_aux" not in {layer.name for layer in head.layers}
    rng = np.random.default_rng(5)
    for v in model.trainable_variables:
        v.assign(v + rng.normal(0, 0.05, v.shape).astype(np.float32))
    sdr = rng.random((2, 64, 96, 3), np.float32)
    linear = rng.random((2, 128, 192, 3), np.float32) * 203.0
    _, knots, aux = model([sdr, linear])
    assert aux.shape == (2, 2) and np.abs(aux.numpy()).max() > 0
    served = head([backbone(sdr), keras.ops.convert_to_tensor(sdr)])
    np.testing.assert_allclose(served.numpy(), knots.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="global path"):
        build_mqn(MQNConfig.from_json(SMALL | {"global_aux": True}))


@needs_data
def test_training_with_global_aux_logs_it_and_exports_the_plain_head(tmp_path: Path) -> None:
    from models.mqn.data import REPO_ROOT
    from models.mqn.export import load_trained
    from models.mqn.train import TrainConfig, train

    smoke = REPO_ROOT / "models" / "mqn" / "configs" / "smoke.json"
    model = json.loads(smoke.read_text())["model"] | {"global_aux": True}
    roots = {"checkpoint_root": str(tmp_path / "ck"), "log_root": str(tmp_path / "logs")}
    train(
        TrainConfig.load(
            smoke, roots | {"steps": 2, "val_every": 2, "model": model, "loss": {"global_aux": 1.0}}
        )
    )
    logged = [
        json.loads(line) for line in (tmp_path / "logs" / "smoke" / "train.jsonl").read_text().splitlines()
    ]
    assert any(np.isfinite(row.get("aux", np.nan)) for row in logged)
    _, _, _, head = load_trained(tmp_path / "ck" / "smoke", "best")
    assert len(head.outputs) == 1
