"""Export a trained ExpandNet to LiteRT: ``python -m models.export --model expandnet --run expandnet_v1``.

* ``expandnet_features_int8.tflite``: the three branches and the first fusion layer, full-integer PTQ
  (weights and activations) calibrated on synthesised views of the *training* scenes; two uint8 inputs
  (the frame at any size and its 256 x 256 view, scale 1/255: raw pixels go straight in), float32 output.
  SELU runs as ELU + LEAKY_RELU (:class:`models.expandnet.layers.SELU`); the converter keeps ELU in float
  between a dequantize and a quantize, which XNNPACK runs in the same partition.
* ``expandnet_head_dr.tflite``: the last 1x1 convolution (features -> three logit offsets) with float
  activations (its few weights are too small for dynamic-range quantization and stay float32).
* ``expandnet.json``: the output convention, the global view size, provenance.

The split is MQN's: int8 everywhere except the last layer, which produces the HDR values.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.expandnet.artifacts import (
    ARTIFACTS,
    FEATURES_FILE,
    FLOAT_MODEL_JSON,
    FLOAT_WEIGHTS,
    HEAD_FILE,
    META_FILE,
)
from models.harness.cli import export_main
from models.harness.export import calibration_samples, convert_int8, open_run, provenance
from models.mqn.data import DEFAULT_DATA_DIR
from models.mqn.export import convert_head  # MQN's head conversion as it is: the same split, the same ops
from service.operators.expandnet import FRAME_INPUT, GLOBAL_INPUT


def load_model(config: Path, weights: Path) -> tuple[Any, Any, Any, Any]:
    """(config, training model, features, head) with ``weights`` loaded."""
    from models.expandnet.model import ExpandNetConfig, build_expandnet

    cfg = ExpandNetConfig.from_json(json.loads(config.read_text()))
    model, features, head = build_expandnet(cfg)
    model.load_weights(weights)
    return cfg, model, features, head


def load_float(artifacts: Path = ARTIFACTS) -> tuple[Any, Any, Any, Any]:
    """The exported float twin (reference for parity tests and the float rows of evaluation)."""
    return load_model(artifacts / FLOAT_MODEL_JSON, artifacts / FLOAT_WEIGHTS)


def calibration_views(
    data_dir: Path, val_scenes: tuple[str, ...], n_per_scene: int, size: int, global_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Representative (frame, global view) uint8 pairs from *training* scenes, synthesised as trained."""
    from models.expandnet.train import inputs_of

    samples = calibration_samples(data_dir, val_scenes, n_per_scene, size)
    frame, view = inputs_of(samples, global_size)
    return frame, view


def convert_features(features: Any, frames: np.ndarray, views: np.ndarray) -> bytes:
    """Full int8 PTQ of the feature extractor (two uint8 inputs, float32 output)."""
    return convert_int8(features, {FRAME_INPUT: frames, GLOBAL_INPUT: views})


def export(
    run_dir: Path,
    out_dir: Path,
    data_dir: Path = DEFAULT_DATA_DIR,
    n_per_scene: int = 2,
    size: int = 320,
    which: str = "best",
) -> dict[str, Any]:
    """Convert both parts, save the float twin and write the metadata JSON; returns the metadata."""
    from models.expandnet.model import count_macs

    train_cfg = open_run(run_dir)
    cfg, model, features, head = load_model(run_dir / "model.json", run_dir / f"{which}.weights.h5")
    frames, views = calibration_views(
        data_dir, tuple(train_cfg["val_scenes"]), n_per_scene, size, cfg.global_size
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FEATURES_FILE).write_bytes(convert_features(features, frames, views))
    (out_dir / HEAD_FILE).write_bytes(convert_head(head))
    model.save_weights(out_dir / FLOAT_WEIGHTS)
    (out_dir / FLOAT_MODEL_JSON).write_text(json.dumps(cfg.to_json(), indent=2))
    meta = {
        "model": "expandnet",
        "features": FEATURES_FILE,
        "head": HEAD_FILE,
        "version": 1,
        "output": "per pixel and channel, a logit offset z: PQ (SMPTE ST 2084) of BT.709 light = "
        "PQ(peak_nits) "
        "* sigmoid(logit(PQ(BT.2408 placement) / PQ(peak_nits)) + z)",
        "sdr_white_nits": 203.0,
        "peak_nits": cfg.peak_nits,
        "global_size": cfg.global_size,
        "split": "int8 features (frame + global view -> first fusion layer, full resolution); float head "
        "(1x1 convolution -> logit offsets)",
        "inputs": "uint8 non-linear SDR code values, RGB, NHWC: the frame, and the frame resized to "
        f"{cfg.global_size}² (Pillow bilinear)",
        "architecture": cfg.to_json(),
        "params": int(model.count_params()),
        "gmacs_1080p": count_macs(cfg, 1080, 1920) / 1e9,
        **provenance(len(frames), size, which, train_cfg),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return export_main(
        argv,
        prog="python -m models.export --model expandnet",
        description=__doc__,
        export=export,
        run="expandnet_v1",
        out=ARTIFACTS,
        calibration_per_scene=2,
        shown=("features", "head", "params", "gmacs_1080p"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
