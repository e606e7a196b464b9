"""SingleHDR on the Keras side: the response-curve basis, config and layer round trips, each stage's maths
(monotone curve, its per-pixel application, the over-exposure mask, the anchored refinement), the start at
the linearized frame, per-frame independence, the stage losses, the phase schedule and the smoke run."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.models.markers import needs_data, needs_tf

pytestmark = [pytest.mark.train, needs_tf]

SMALL = {"unet_channels": [4, 8, 8], "lin_channels": [8, 8], "lin_dense": 8, "hist_bins": 4}
CURVE_ATOL = 1e-5
"""Keras curve application against NumPy's piecewise-linear interpolation (float32 sums of 32 terms)."""


def test_basis_is_reproducible_monotone_and_compact() -> None:
    from models.singlehdr.basis import KNOTS, curve_family, explained_variance, knot_codes, response_basis

    family = curve_family()
    np.testing.assert_array_equal(family, curve_family())  # seeded: the same family on every call
    assert family.shape[1] == KNOTS and len(family) > 300
    assert (np.diff(family, axis=1) >= 0).all()
    assert (family[:, 0] == 0).all() and (family[:, -1] == 1).all()
    assert explained_variance() > 0.999
    mean, basis = response_basis()
    np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-9)
    # The sRGB EOTF, a member, is rebuilt from its 11 weights within a hundredth of white.
    from models.mqn.data import decode_sdr

    srgb = decode_sdr(knot_codes().astype(np.float32), "srgb").astype(np.float64)
    rebuilt = mean + ((srgb - mean) @ basis.T) @ basis
    assert np.abs(rebuilt - srgb).max() < 0.01
    with pytest.raises(ValueError, match="components"):
        response_basis(0)


def test_config_round_trips_and_rejects_what_it_cannot_build() -> None:
    from models.singlehdr.model import SingleHDRConfig

    cfg = SingleHDRConfig.from_json(SMALL)
    assert SingleHDRConfig.from_json(cfg.to_json()) == cfg
    assert cfg.stride == 4 and SingleHDRConfig().stride == 8
    with pytest.raises(ValueError, match="widht"):
        SingleHDRConfig.from_json({"widht": 1})
    with pytest.raises(ValueError, match="two levels"):
        SingleHDRConfig.from_json({"unet_channels": [8]})


def test_fast_mode_costs_a_fraction_of_native() -> None:
    from models.singlehdr.model import SingleHDRConfig, count_macs

    cfg = SingleHDRConfig()
    native, fast = count_macs(cfg, 1080, 1920), count_macs(cfg, 288, 512)
    assert fast / native == pytest.approx(288 * 512 / (1080 * 1920), rel=0.05)


def test_custom_layers_round_trip_their_config() -> None:
    from models.singlehdr.layers import (
        AnchoredLogit,
        ApplyCurve,
        Dequantize,
        Hallucinate,
        OverExposureMask,
        RelativeToPQ,
        ResponseCurve,
        Sobel,
        SoftHistogram,
    )

    for layer in (
        Sobel(3),
        SoftHistogram(6),
        ResponseCurve(7, 1e-3),
        ApplyCurve(16),
        OverExposureMask(0.9),
        Dequantize(),
        Hallucinate(),
        RelativeToPQ(100.0, 600.0),
        AnchoredLogit(0.7, 1e-3),
    ):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_response_curve_is_monotone_and_zero_weights_give_the_mean() -> None:
    from models.singlehdr.basis import response_basis
    from models.singlehdr.layers import ResponseCurve

    layer = ResponseCurve(11, eps=0.0)
    steps = layer(np.zeros((1, 11), np.float32)).numpy()
    mean, _ = response_basis()
    np.testing.assert_allclose(np.cumsum(steps[0]), mean[1:], atol=1e-6)
    wild = ResponseCurve(11)(np.random.default_rng(0).normal(0, 3, (4, 11)).astype(np.float32)).numpy()
    assert (wild > 0).all()
    np.testing.assert_allclose(wild.sum(axis=1), 1.0, atol=1e-5)


def test_curve_application_is_piecewise_linear_interpolation() -> None:
    from models.singlehdr.basis import knot_codes
    from models.singlehdr.layers import ApplyCurve, ResponseCurve

    rng = np.random.default_rng(1)
    steps = ResponseCurve(11)(rng.normal(0, 1, (2, 11)).astype(np.float32)).numpy()
    x = rng.random((2, 9, 13, 3), np.float32)
    x[0, 0, 0] = (0.0, 1.0, 0.5)
    got = ApplyCurve(32)(x, steps).numpy()
    for i in range(2):
        curve = np.concatenate([[0.0], np.cumsum(steps[i])])
        np.testing.assert_allclose(got[i], np.interp(x[i], knot_codes(), curve), atol=CURVE_ATOL)


def test_sobel_histogram_and_mask() -> None:
    from models.singlehdr.layers import OverExposureMask, Sobel, SoftHistogram

    flat = np.full((1, 8, 8, 3), 0.3, np.float32)
    assert np.abs(Sobel()(flat).numpy()).max() < 1e-6  # edge-replicated: no edge at the border either
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32)[None, None, :, None], (1, 4, 1, 3))
    edges = Sobel()(ramp).numpy()
    assert np.abs(edges[..., 0::2][:, :, 1:-1]).min() > 0 and np.abs(edges[..., 1::2]).max() < 1e-6
    x = np.random.default_rng(2).uniform(1 / 16, 15 / 16, (1, 5, 7, 3)).astype(np.float32)
    hist = SoftHistogram(8)(x).numpy().reshape(1, 5, 7, 3, 8)
    np.testing.assert_allclose(hist.sum(axis=-1), 1.0, atol=1e-5)  # inside the outer centres: a partition
    linear = np.array([0.5, 0.95, 0.975, 1.0], np.float32).reshape(1, 1, 4, 1) * np.ones(
        (1, 1, 1, 3), np.float32
    )
    np.testing.assert_allclose(OverExposureMask()(linear).numpy().ravel(), [0.0, 0.0, 0.5, 1.0], atol=1e-5)


def test_a_fresh_model_is_the_hallucinated_linearization() -> None:
    """Zero-initialised dequantization residual and refinement: the output is H itself, PQ clipped at 1000."""
    from models.singlehdr.model import SingleHDRConfig, build_singlehdr

    net = build_singlehdr(SingleHDRConfig.from_json(SMALL))
    x = np.random.default_rng(3).random((2, 16, 24, 3), np.float32)
    x_deq, lin_pq, alpha, h_pq, out = (t.numpy() for t in net.model(x))
    np.testing.assert_allclose(x_deq, x, atol=1e-7)
    np.testing.assert_allclose(out, h_pq, atol=2e-6)
    assert (h_pq >= lin_pq - 1e-6).all()  # hallucination only adds light
    assert np.allclose(
        h_pq[np.broadcast_to(alpha == 0, h_pq.shape)], lin_pq[np.broadcast_to(alpha == 0, h_pq.shape)]
    )
    assert lin_pq.max() <= 0.5807  # I_lin <= 1: SDR white, PQ(203 cd/m²)


def _trained_like(model) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    for v in model.trainable_variables:
        v.assign(rng.normal(0, 0.2, v.shape).astype(np.float32))


def test_model_save_load_round_trip_and_frame_independence(tmp_path: Path) -> None:
    import keras

    from models.singlehdr.model import SingleHDRConfig, build_singlehdr

    net = build_singlehdr(SingleHDRConfig.from_json(SMALL))
    _trained_like(net.model)
    x = np.random.default_rng(5).random((2, 16, 20, 3), np.float32)
    out = net.model(x)[-1].numpy()
    net.model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x)[-1].numpy(), out, atol=1e-5)
    np.testing.assert_allclose(net.model(x[1:])[-1].numpy()[0], out[1], atol=1e-5)
    # The basis is a non-trainable weight, saved and restored with the rest.
    curve = net.stages["lin"].get_layer("lin_curve")
    assert {w.name for w in curve.non_trainable_weights} == {"mean", "basis"}


def test_head_is_the_model_after_dequantization() -> None:
    from models.singlehdr.model import SingleHDRConfig, build_singlehdr

    net = build_singlehdr(SingleHDRConfig.from_json(SMALL))
    _trained_like(net.model)
    x = np.random.default_rng(6).random((1, 16, 16, 3), np.float32)
    logit = net.head([x, net.features(x).numpy()]).numpy()
    pq_peak = float(net.model.get_layer("out_pq").scale)
    np.testing.assert_allclose(pq_peak / (1 + np.exp(-logit)), net.model(x)[-1].numpy(), atol=1e-5)


def test_stage_losses_are_zero_on_their_targets_and_phases_pick_theirs() -> None:
    from models.mqn.convention import nits_to_pq
    from models.singlehdr.losses import PQ_WHITE, stage_loss

    rng = np.random.default_rng(7)
    target = nits_to_pq(rng.random((1, 4, 4, 3), np.float32) * 900 + 1)
    codes = rng.random((1, 4, 4, 3), np.float32)
    alpha = np.zeros((1, 4, 4, 1), np.float32)
    perfect = (codes, np.minimum(target, PQ_WHITE), alpha, target, target)
    for stage in ("deq", "lin", "hal", "joint"):
        total, terms = stage_loss(stage, perfect, codes, target, target)
        assert float(total) == pytest.approx(0.0, abs=1e-7) and set(terms) == {"deq", "lin", "hal", "out"}
    wrong = (codes, np.minimum(target, PQ_WHITE), alpha + 1.0, target * 0.5, target)
    assert float(stage_loss("hal", wrong, codes, target, target)[0]) > 0.01
    assert float(stage_loss("deq", wrong, codes, target, target)[0]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="stage 'ref'"):
        stage_loss("ref", perfect, codes, target, target)


def test_phases_and_configs_are_checked(tmp_path: Path) -> None:
    from models.singlehdr.train import CONFIGS, SingleHDRTrainConfig, phase_config, train

    for path in CONFIGS.glob("*.json"):
        cfg = SingleHDRTrainConfig.load(path)
        assert [p["stage"] for p in cfg.phases] == ["deq", "lin", "hal", "joint"]
        assert all(phase_config(cfg, p).run == f"{cfg.run}/{p['stage']}" for p in cfg.phases)
    cfg = SingleHDRTrainConfig.load(CONFIGS / "default.json")
    joint = phase_config(cfg, cfg.phases[-1])
    assert joint.lr == 0.00025 and joint.loss == cfg.loss
    with pytest.raises(ValueError, match="batch_size"):
        phase_config(cfg, {"stage": "deq", "batch_size": 2})
    with pytest.raises(ValueError, match="'ref'"):
        phase_config(cfg, {"stage": "ref"})
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"init_from": "models/checkpoints/mqn_v2"}))
    with pytest.raises(ValueError, match="phase by phase"):
        train(SingleHDRTrainConfig.load(p))
    p.write_text(json.dumps({"stage": "nope"}))
    with pytest.raises(ValueError, match="not one of this run's phases"):
        train(SingleHDRTrainConfig.load(p))


def test_entry_points_dispatch_on_model() -> None:
    from models.harness.cli import dispatch

    with pytest.raises(SystemExit) as exit_info:
        dispatch("train", ["--model", "singlehdr", "--help"])
    assert exit_info.value.code == 0


@needs_data
def test_smoke_training_runs_every_phase_checkpoints_and_resumes(tmp_path: Path) -> None:
    from models.singlehdr.train import CONFIGS, SingleHDRTrainConfig, train

    smoke = CONFIGS / "smoke.json"
    roots = {"checkpoint_root": str(tmp_path / "ck"), "log_root": str(tmp_path / "logs"), "threads": 1}
    first = train(SingleHDRTrainConfig.load(smoke, roots))
    assert list(first["phases"]) == ["deq", "lin", "hal", "joint"]
    assert all(s["steps"] == 2 for s in first["phases"].values()) and np.isfinite(first["val_pq_psnr"])
    run = tmp_path / "ck" / "singlehdr_smoke"
    assert (run / "best.weights.h5").exists() and (run / "model.json").exists()
    assert all((run / stage / "last.weights.h5").exists() for stage in ("deq", "lin", "hal", "joint"))
    # Rerun: finished phases are skipped; a longer last phase resumes from its checkpoint.
    cfg = SingleHDRTrainConfig.load(smoke, roots)
    cfg.phases[-1] = cfg.phases[-1] | {"steps": 3}
    second = train(cfg)
    assert second["phases"]["deq"]["resumed_from"] == 0 and second["phases"]["joint"]["resumed_from"] == 2
    assert second["phases"]["joint"]["steps"] == 3
    summary = json.loads((tmp_path / "logs" / "singlehdr_smoke" / "summary.json").read_text())
    assert summary["steps"] == 9
