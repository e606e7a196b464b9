"""The region-map ConvLSTM on the Keras side: the region maps (NumPy and Keras alike), the anchored inverse
S-curve, config and layer round trips, the start at the pseudo-HDR image, per-frame independence, the head
against the training model, the phase losses and schedule, and the smoke run."""

import json
from pathlib import Path

import numpy as np
import pytest

from service.operators.region_lstm import REGIONS, bounds_tensor, region_bounds, region_maps
from tests.models.markers import needs_data, needs_tf

SMALL = {
    "sparam_size": 64,
    "sparam_channels": [4, 4, 8, 8, 8],
    "sparam_dense": 8,
    "lstm_channels": [4, 3],
    "fsrcnn_d": 4,
    "fsrcnn_s": 4,
    "fsrcnn_m": 1,
}
PQ_ATOL = 2e-6
"""float32 PQ codes computed along two paths (a fraction of a 12-bit code)."""


def _frames(seed: int, shape: tuple[int, ...] = (2, 16, 24, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_region_maps_split_the_pixels_in_fifths_brightest_first() -> None:
    frame = np.arange(100, dtype=np.uint8).reshape(1, 10, 10, 1).repeat(3, axis=-1)
    bounds = region_bounds(frame)
    np.testing.assert_array_equal(bounds[0, :, 0], [19, 39, 59, 79])
    maps = region_maps(frame, bounds)
    assert maps.shape == (1, 10, 10, 3 * REGIONS)
    total = maps.reshape(-1, 15).astype(int).sum(axis=1)
    np.testing.assert_array_equal(total, frame.reshape(-1, 3)[:, 0].astype(int) * 3)
    for j in range(REGIONS):  # map j holds the codes of region N - j: 80..99 first, 0..19 last
        on = maps[0, ..., 3 * j] > 0
        assert on.sum() == 20 - (j == REGIONS - 1)  # code 0 is in the darkest map, as a zero
        assert maps[0, ..., 3 * j][on].min() == max(80 - 20 * j, 1)


def test_region_maps_keep_equal_codes_together_and_partition_any_frame() -> None:
    frames = _frames(0)
    frames[1] = 255  # one code only: everything in the brightest region, the others empty
    bounds = region_bounds(frames)
    assert (np.diff(bounds, axis=1) >= 0).all() and bounds.min() >= -1
    np.testing.assert_array_equal(bounds[1], 254)  # CDF 0 below 255: every bound just under it
    maps = region_maps(frames, bounds).reshape(2, 16, 24, REGIONS, 3)
    np.testing.assert_array_equal(maps.astype(int).sum(axis=3), frames)
    assert ((maps > 0).sum(axis=3) <= 1).all()
    assert (maps[1, :, :, 0] == 255).all() and (maps[1, :, :, 1:] == 0).all()


@needs_tf
def test_keras_region_maps_are_the_numpy_ones() -> None:
    from models.region_lstm.layers import RegionMaps

    frames = _frames(1)
    bounds = region_bounds(frames)
    got = RegionMaps()(frames.astype(np.float32) / 255.0, bounds_tensor(bounds)).numpy()
    np.testing.assert_array_equal(np.round(got * 255.0).astype(np.uint8), region_maps(frames, bounds))


@needs_tf
def test_inverse_s_curve_keeps_mid_grey_and_expands_white_within_the_peak() -> None:
    from models.mqn.convention import nits_to_pq, pq_to_nits
    from models.region_lstm.layers import MID_GREY, PseudoHDR

    d = np.concatenate([[0.0, MID_GREY, 1.0], np.linspace(0.0, 1.0, 61)]).astype(np.float32)
    anchor = nits_to_pq(203.0 * d).reshape(1, 1, -1, 1).repeat(3, axis=-1)
    rng = np.random.default_rng(2)
    for curve in (np.zeros((1, 4)), rng.normal(0, 3, (1, 4)), np.full((1, 4), 30.0), np.full((1, 4), -30.0)):
        layer = PseudoHDR()
        light = pq_to_nits(layer(anchor, curve.astype(np.float32)).numpy()) / 203.0
        e = layer.expansion(curve.astype(np.float32)).numpy().ravel()
        assert ((e >= 1.0) & (e <= 1000.0 / 203.0 + 1e-5)).all()
        np.testing.assert_allclose(light[0, 0, 1], MID_GREY, rtol=1e-4)  # anchored, whatever the curve
        np.testing.assert_allclose(light[0, 0, 2], e, rtol=1e-4)  # white -> E per channel
        assert light[0, 0, 0].max() < 1e-5 and (np.diff(light[0, 0, 3:], axis=0) >= -1e-6).all()
        if curve[0, 0] == -30.0:  # E = 1: the identity, bt2408
            np.testing.assert_allclose(light[0, 0, 3:], np.repeat(d[3:, None], 3, 1), atol=1e-4)


@needs_tf
def test_config_round_trips_and_rejects_what_it_cannot_build() -> None:
    from models.region_lstm.model import RegionLSTMConfig

    cfg = RegionLSTMConfig.from_json(SMALL)
    assert RegionLSTMConfig.from_json(cfg.to_json()) == cfg
    assert RegionLSTMConfig().deconv_kernel == 8 and RegionLSTMConfig(stride=1).deconv_kernel == 9
    with pytest.raises(ValueError, match="widht"):
        RegionLSTMConfig.from_json({"widht": 1})
    with pytest.raises(ValueError, match="sparam_size 100"):
        RegionLSTMConfig.from_json({"sparam_size": 100})


@needs_tf
def test_fast_mode_costs_a_fraction_of_native() -> None:
    from models.region_lstm.model import RegionLSTMConfig, count_macs

    cfg = RegionLSTMConfig()
    native, fast = count_macs(cfg, 1080, 1920), count_macs(cfg, 288, 512)
    assert 5e9 < native < 20e9 and fast / native < 0.15


@needs_tf
def test_custom_layers_round_trip_their_config() -> None:
    from models.region_lstm.layers import AnchorOffset, Crop, LSTMGates, PseudoHDR, RegionMaps

    for layer in (
        RegionMaps(4, 2),
        PseudoHDR(100.0, 600.0, 0.2),
        LSTMGates(),
        Crop(3),
        AnchorOffset(0.7, 1e-3),
    ):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def _inputs(frames: np.ndarray, sparam_size: int) -> list[np.ndarray]:
    from models.mqn.convention import nits_to_pq
    from service.operators.region_lstm import network_inputs

    sparam_view, unit, bounds = network_inputs(frames, sparam_size)
    anchor = nits_to_pq(203.0 * unit**2.2)
    return [unit, sparam_view.astype(np.float32) / 255.0, anchor, bounds]


def _trained_like(model) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    for v in model.trainable_variables:
        v.assign(rng.normal(0, 0.2, v.shape).astype(np.float32))


@needs_tf
def test_a_fresh_model_is_its_pseudo_hdr_image() -> None:
    """Zero-initialised deconvolution: the output is the pseudo-HDR image, as the phase-1 model gives it."""
    from models.region_lstm.model import RegionLSTMConfig, build_region_lstm

    net = build_region_lstm(RegionLSTMConfig.from_json(SMALL))
    frame, view, anchor, bounds = _inputs(_frames(3), 64)
    pseudo, out = (t.numpy() for t in net.model([frame, view, anchor, bounds]))
    np.testing.assert_allclose(out, pseudo, atol=PQ_ATOL)
    np.testing.assert_allclose(net.pseudo([view, anchor]).numpy(), pseudo, atol=PQ_ATOL)
    assert {layer.name for layer in net.pseudo.layers} >= {"region_lstm_sparam", "pseudo_only"}
    assert not any("lstm0" in w.path for w in net.pseudo.weights)  # phase 1 runs SParam-Net only


@needs_tf
def test_model_save_load_round_trip_frame_independence_and_head(tmp_path: Path) -> None:
    import keras

    from models.region_lstm.model import RegionLSTMConfig, build_region_lstm

    net = build_region_lstm(RegionLSTMConfig.from_json(SMALL))
    _trained_like(net.model)
    inputs = _inputs(_frames(5, (2, 16, 20, 3)), 64)
    out = net.model(inputs)[-1].numpy()
    net.model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(inputs)[-1].numpy(), out, atol=1e-5)
    np.testing.assert_allclose(net.model([x[1:] for x in inputs])[-1].numpy()[0], out[1], atol=1e-5)
    frame, view, anchor, bounds = inputs
    offsets = net.head([frame, anchor, bounds, net.features(view).numpy()]).numpy()
    pq_peak = float(net.model.get_layer("out_pq").pq_peak)
    p = np.clip(anchor / pq_peak, 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(pq_peak / (1 + np.exp(-(np.log(p / (1 - p)) + offsets))), out, atol=1e-5)


@needs_tf
def test_phase_losses_are_zero_on_their_targets() -> None:
    from models.mqn.convention import nits_to_pq
    from models.region_lstm.losses import phase_loss

    rng = np.random.default_rng(7)
    target = nits_to_pq(rng.random((2, 16, 16, 3), np.float32) * 900 + 1)
    for stage, outputs in (("sparam", target), ("joint", (target, target))):
        total, terms = phase_loss(stage, outputs, target, target)
        assert float(total) == pytest.approx(0.0, abs=1e-6)
        assert all(float(v) == pytest.approx(1.0 if "ssim" in k else 0.0, abs=1e-6) for k, v in terms.items())
    assert float(phase_loss("joint", (target, target * 0.5), target, target)[0]) > 0.05
    with pytest.raises(ValueError, match="stage 'lstm'"):
        phase_loss("lstm", target, target, target)


def test_phases_and_configs_are_checked(tmp_path: Path) -> None:
    from models.harness.phases import phase_config
    from models.region_lstm.train import CONFIGS, STAGES, RegionLSTMTrainConfig, train

    for path in CONFIGS.glob("*.json"):
        cfg = RegionLSTMTrainConfig.load(path)
        assert [p["stage"] for p in cfg.phases] == ["sparam", "joint"]
    cfg = RegionLSTMTrainConfig.load(CONFIGS / "default.json")
    joint = phase_config(cfg, cfg.phases[-1], STAGES)
    assert joint.run == "region_lstm_v1/joint" and joint.lr == 0.00025 and joint.loss == cfg.loss
    assert cfg.synthesis == {"p_bright": 0.35} and cfg.loss["highlight"] == 4.0
    p = tmp_path / "c.json"
    for raw, message in (
        ({"init_from": "models/checkpoints/mqn_v2"}, "phase by phase"),
        ({"stage": "nope"}, "not one of this run's phases"),
        ({"phases": [{"stage": "sparam"}]}, "last phase must be 'joint'"),
        ({"phases": [{"stage": "lstm"}]}, "'lstm' is not known"),
        ({"crop": 66}, "multiple of the model's stride"),
    ):
        p.write_text(json.dumps(raw))
        with pytest.raises(ValueError, match=message):
            train(RegionLSTMTrainConfig.load(p))


def test_entry_points_dispatch_on_model() -> None:
    from models.harness.cli import dispatch

    with pytest.raises(SystemExit) as exit_info:
        dispatch("train", ["--model", "region_lstm", "--help"])
    assert exit_info.value.code == 0


@needs_tf
@needs_data
def test_smoke_training_runs_both_phases_checkpoints_and_resumes(tmp_path: Path) -> None:
    from models.region_lstm.train import CONFIGS, RegionLSTMTrainConfig, train

    smoke = CONFIGS / "smoke.json"
    roots = {"checkpoint_root": str(tmp_path / "ck"), "log_root": str(tmp_path / "logs"), "threads": 1}
    first = train(RegionLSTMTrainConfig.load(smoke, roots))
    assert list(first["phases"]) == ["sparam", "joint"]
    assert all(s["steps"] == 2 for s in first["phases"].values()) and np.isfinite(first["val_pq_psnr"])
    run = tmp_path / "ck" / "region_lstm_smoke"
    assert (run / "best.weights.h5").exists() and (run / "model.json").exists()
    assert all((run / stage / "last.weights.h5").exists() for stage in ("sparam", "joint"))
    cfg = RegionLSTMTrainConfig.load(smoke, roots)
    cfg.phases[-1] = cfg.phases[-1] | {"steps": 3}
    second = train(cfg)
    assert second["phases"]["sparam"]["resumed_from"] == 0 and second["phases"]["joint"]["resumed_from"] == 2
    summary = json.loads((tmp_path / "logs" / "region_lstm_smoke" / "summary.json").read_text())
    assert summary["steps"] == 5
