"""ExpandNet on the Keras side: config and layer round trips, the SELU and dilation rewrites, the anchored
output (zero offset = bt2408, training twin = runtime maths), per-frame independence, borders, the loss, and
the smoke training run."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.models.markers import needs_data, needs_tf

pytestmark = [pytest.mark.train, needs_tf]

SMALL = {
    "local_channels": [8, 8],
    "dilated_channels": [8, 8, 8, 8],
    "global_channels": 8,
    "fusion_channels": 8,
}
PAPER_GMACS_1080P = 415.5
"""All convolutions of the paper's widths on one 1920 x 1080 frame (the global branch adds 0.23)."""


def test_config_round_trips_and_rejects_what_it_cannot_build() -> None:
    from models.expandnet.model import ExpandNetConfig

    cfg = ExpandNetConfig.from_json(SMALL)
    assert ExpandNetConfig.from_json(cfg.to_json()) == cfg
    assert cfg.radius == 8  # four dilated 3x3 convolutions read 2 px each side
    with pytest.raises(ValueError, match="widht"):
        ExpandNetConfig.from_json({"widht": 1})
    with pytest.raises(ValueError, match="global_size"):
        ExpandNetConfig.from_json({"global_size": 128})


def test_paper_widths_cost() -> None:
    from models.expandnet.model import ExpandNetConfig, count_macs

    assert count_macs(ExpandNetConfig(), 1080, 1920) / 1e9 == pytest.approx(PAPER_GMACS_1080P, abs=0.1)


def test_custom_layers_round_trip_their_config() -> None:
    from models.expandnet.layers import SELU, BroadcastAdd, DilatedConv2D, ReplicatePad
    from models.expandnet.model import AnchoredSigmoid

    for layer in (
        ReplicatePad(3),
        BroadcastAdd(),
        SELU(),
        DilatedConv2D(4, 3, dilation_rate=2),
        AnchoredSigmoid(0.7, 1e-3),
    ):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_selu_rewrite_is_selu() -> None:
    import keras

    from models.expandnet.layers import SELU

    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    np.testing.assert_allclose(SELU()(x).numpy(), keras.activations.selu(x).numpy(), rtol=1e-6, atol=1e-6)


def test_dilated_conv_rewrite_is_keras_dilation() -> None:
    import keras

    from models.expandnet.layers import DilatedConv2D

    x = np.random.default_rng(0).random((2, 20, 24, 3), np.float32)
    ours, theirs = DilatedConv2D(5, 3, dilation_rate=2), keras.layers.Conv2D(5, 3, dilation_rate=2)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), atol=1e-5)


def _inputs(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from models.mqn.convention import nits_to_pq
    from service.colour.description import ColourDescription

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    view = rng.random((n, 256, 256, 3), np.float32)
    base = nits_to_pq(ColourDescription.still().linear_lut(203.0)[codes])
    return codes.astype(np.float32) / 255.0, view, base


def test_zero_initialised_model_is_the_bt2408_placement() -> None:
    from models.expandnet.model import ExpandNetConfig, build_expandnet

    model, _, _ = build_expandnet(ExpandNetConfig.from_json(SMALL))
    frame, view, base = _inputs(2, 40, 56)
    out = model([frame, view, base]).numpy()
    np.testing.assert_allclose(out[base > 1e-3], base[base > 1e-3], atol=2e-6)


def test_training_anchor_matches_the_runtime_maths() -> None:
    from models.expandnet.model import AnchoredSigmoid
    from service.operators.learned import anchored_sigmoid

    rng = np.random.default_rng(2)
    base = rng.random((4, 9, 11, 3), np.float32) * 0.75
    base[0, 0, 0] = 0.0  # black: the clipped logit
    offset = rng.normal(0, 3, base.shape).astype(np.float32)
    np.testing.assert_allclose(
        AnchoredSigmoid(0.7518)(offset, base).numpy(), anchored_sigmoid(base, offset, 0.7518), atol=2e-6
    )


def _trained_like(model) -> None:  # type: ignore[no-untyped-def]
    """Random weights everywhere (nothing left at a zero initialisation)."""
    rng = np.random.default_rng(3)
    for v in model.trainable_variables:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))


def test_model_save_load_round_trip_and_frame_independence(tmp_path: Path) -> None:
    import keras

    from models.expandnet.model import ExpandNetConfig, build_expandnet

    model, _, _ = build_expandnet(ExpandNetConfig.from_json(SMALL))
    _trained_like(model)
    frame, view, base = _inputs(2, 32, 48)
    out = model([frame, view, base]).numpy()
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again([frame, view, base]).numpy(), out, atol=1e-5)
    alone = model([frame[1:], view[1:], base[1:]]).numpy()
    np.testing.assert_allclose(alone[0], out[1], atol=1e-5)


def test_features_of_a_flat_field_are_flat_to_the_border() -> None:
    """Edge-replicating input padding: no feature knows where the frame ends."""
    from models.expandnet.model import ExpandNetConfig, build_features

    features = build_features(ExpandNetConfig.from_json(SMALL))
    _trained_like(features)
    view = np.full((1, 256, 256, 3), 0.4, np.float32)
    feats = features([np.full((1, 40, 64, 3), 0.4, np.float32), view]).numpy()
    assert np.abs(feats - feats[:, :1, :1]).max() < 1e-4
    rows = np.broadcast_to(np.linspace(0.1, 0.9, 40, dtype=np.float32)[None, :, None, None], (1, 40, 64, 3))
    feats = features([np.ascontiguousarray(rows), view]).numpy()
    assert np.abs(feats - feats[:, :, :1]).max() < 1e-4  # every row stays uniform


def test_loss_is_zero_on_target_and_cosine_sees_only_colour() -> None:
    from models.expandnet.losses import expandnet_loss
    from models.mqn.convention import nits_to_pq

    rng = np.random.default_rng(4)
    nits = rng.random((2, 8, 8, 3), np.float32) * 500 + 1
    total, _ = expandnet_loss(nits_to_pq(nits), nits_to_pq(nits))
    assert float(total) == pytest.approx(0.0, abs=1e-6)
    _, terms = expandnet_loss(nits_to_pq(nits), nits_to_pq(nits * 1.5))  # brighter, same colour
    assert float(terms["cosine"]) == pytest.approx(0.0, abs=1e-5) and float(terms["l1"]) > 0.01
    _, terms = expandnet_loss(nits_to_pq(nits), nits_to_pq(nits[..., ::-1]))  # other colours
    assert float(terms["cosine"]) > 0.01


def test_highlight_weight_counts_only_near_clipped_sdr_pixels() -> None:
    from models.expandnet.losses import LossWeights, expandnet_loss
    from models.mqn.convention import nits_to_pq

    base = np.full((1, 4, 4, 3), 100.0, np.float32)  # half of SDR white: no highlight
    base[0, 0, 0] = 203.0  # one clipped pixel
    target = nits_to_pq(base * 2.0)
    dark_error = nits_to_pq(base).copy()
    dark_error[0, 0, 0] = nits_to_pq(base * 2.0)[0, 0, 0]  # wrong everywhere but the clipped pixel
    bright_error = target.copy()
    bright_error[0, 0, 0] = nits_to_pq(base)[0, 0, 0]  # wrong only at the clipped pixel
    w = LossWeights(cosine=0.0, highlight=4.0)
    plain = LossWeights(cosine=0.0)
    base_pq = nits_to_pq(base)
    ratio = float(expandnet_loss(target, bright_error, w, base_pq)[0]) / float(
        expandnet_loss(target, bright_error, plain, base_pq)[0]
    )
    assert ratio == pytest.approx(5.0, rel=1e-4)
    assert float(expandnet_loss(target, dark_error, w, base_pq)[0]) == pytest.approx(
        float(expandnet_loss(target, dark_error, plain, base_pq)[0]), rel=1e-5
    )


def test_config_rejects_unknown_keys_and_warm_starts(tmp_path: Path) -> None:
    from models.expandnet.train import ExpandNetTrainConfig, train

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"stpes": 3}))
    with pytest.raises(ValueError, match="stpes"):
        ExpandNetTrainConfig.load(p)
    p.write_text(json.dumps({"init_from": "models/checkpoints/mqn_v2"}))
    with pytest.raises(ValueError, match="from scratch"):
        train(ExpandNetTrainConfig.load(p))


def test_entry_points_dispatch_on_model() -> None:
    from models.harness.cli import dispatch

    with pytest.raises(SystemExit) as exit_info:
        dispatch("train", ["--model", "expandnet", "--help"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit):
        dispatch("train", ["--model", "nope"])


@needs_data
def test_smoke_training_runs_checkpoints_and_resumes(tmp_path: Path) -> None:
    from models.expandnet.train import CONFIGS, ExpandNetTrainConfig, train

    smoke = CONFIGS / "smoke.json"
    roots = {"checkpoint_root": str(tmp_path / "ck"), "log_root": str(tmp_path / "logs")}
    first = train(ExpandNetTrainConfig.load(smoke, roots | {"steps": 3, "val_every": 3}))
    assert first["steps"] == 3 and np.isfinite(first["val_pq_psnr"])
    run = tmp_path / "ck" / "expandnet_smoke"
    assert (run / "best.weights.h5").exists() and (run / "model.json").exists()
    second = train(ExpandNetTrainConfig.load(smoke, roots | {"steps": 4, "val_every": 100}))
    assert second["resumed_from"] == 3 and second["steps"] == 4
    lines = (tmp_path / "logs" / "expandnet_smoke" / "train.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
