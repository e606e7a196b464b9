"""Keras side: layer config round trips, save/load, per-frame independence, and the smoke training run."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.models.markers import needs_data, needs_tf

pytestmark = [pytest.mark.train, needs_tf]

SMALL = {"width": 0.35, "decoder_channels": [16, 16, 8, 8], "features": 8, "attention": "csa"}


def test_custom_layers_round_trip_their_config() -> None:
    from models.mqn.layers import ChannelAttention, InstanceNorm, ResidualBound, SpatialAttention

    for layer in (InstanceNorm(2e-3), ChannelAttention(0.25), SpatialAttention(5), ResidualBound(0.3, 0.7)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_model_save_load_round_trip_and_frame_independence(tmp_path: Path) -> None:
    import keras

    from models.mqn.model import MQNConfig, build_mqn

    cfg = MQNConfig.from_json(SMALL)
    assert MQNConfig.from_json(cfg.to_json()) == cfg
    model, _, _ = build_mqn(cfg)
    rng = np.random.default_rng(0)
    sdr = rng.random((2, 64, 96, 3), np.float32)
    base = rng.random((2, 64, 96, 3), np.float32) * 0.5
    out = model([sdr, base]).numpy()
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again([sdr, base]).numpy(), out, atol=1e-6)
    alone = model([sdr[1:], base[1:]]).numpy()
    np.testing.assert_allclose(alone[0], out[1], atol=1e-6)


@needs_data
def test_smoke_training_runs_checkpoints_and_resumes(tmp_path: Path) -> None:
    from models.mqn.data import REPO_ROOT
    from models.mqn.train import TrainConfig, train

    smoke = REPO_ROOT / "models" / "mqn" / "configs" / "smoke.json"
    roots = {"checkpoint_root": str(tmp_path / "ck"), "log_root": str(tmp_path / "logs")}
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
