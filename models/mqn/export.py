"""Export a trained MQN to LiteRT: ``python -m models.export [--run mqn_v1]``.

* ``models/artifacts/mqn_backbone_int8.tflite``: full-integer PTQ (weights *and* activations), calibrated on
  real training views downscaled as at run time, TFLITE_BUILTINS_INT8 only; uint8 input (scale 1/255: raw
  8-bit pixels go straight in), float32 output (the dequantize is the last op, so the head receives float
  features at the grid's resolution).
* ``models/artifacts/mqn_head_dr.tflite``: dynamic-range quantization (int8 weights where large enough,
  float32 activations): features (and, with a global path, the same low-resolution SDR as float32 in
  [0, 1]; with ``cell_stats``, per-cell statistics of the full-resolution frame) -> tone-curve knots.
* ``models/artifacts/mqn.json``: the curve convention (knots, floor), processing resolutions, provenance.

The split is the paper's: int8 everywhere except the last layers that produce HDR values.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.harness.cli import export_main
from models.harness.export import convert_int8, open_run, training_summary
from models.mqn.artifacts import (
    ARTIFACTS,
    BACKBONE_FILE,
    FLOAT_MODEL_JSON,
    FLOAT_WEIGHTS,
    HEAD_FILE,
    META_FILE,
)
from models.mqn.data import (
    SceneBank,
    SynthesisConfig,
    downscale,
    fixed_samples,
    read_manifest,
    split_scenes,
)
from service.operators import cell_stats

FAST_LONG_SIDE = 128
QUALITY_LONG_SIDE = 512
"""Processing resolutions (long side, px) of the two modes: the grid has one curve per 16 px of them. Fast
is the lowest that keeps the quality (issue 10), measured on the held-out cases with ``mqn_v14``'s own
weights (PU21-PSNR / ΔE_ITP / pooled highlights): at 1280x720, 128 px 31.27 / 16.78 / 22.77, 192 px 31.15 /
17.12 / 22.52, 256 px 31.17 / 16.89 / 22.65; at 640x360 128 and 192 px are equal (30.63 / 17.18 against
30.64 / 17.23) and 96 px falls to 30.41. The ferris lamps rise as the view shrinks (p99.9 611-648 cd/m² at
128 px, 560-609 at 192; ``bench.lamps``). It was 256 until mqn_v6 and 192 until mqn_v14; the network is
trained on views of 96-192 px. ``mqn_v25``, trained on the same views, reaches 716-734 cd/m² there;
``mqn_v38``, half trained on 128-256 px views of larger crops, 618-654."""
PEAK_LONG_SIDE = FAST_LONG_SIDE
"""View (long side, px) from which a mode with a larger one takes its peak curves
(:func:`service.operators.curve_grid.with_coarse_peaks`): quality mode's lamps then come from the view that
expands them (``mqn_v14``: ferris p99.9 623-643 cd/m² instead of 411-502), at one more network pass of
~0.6 ms."""
STRIDE = 32

if TYPE_CHECKING:
    from models.mqn.model import MQNConfig


def load_trained(run_dir: Path, which: str = "best") -> tuple[Any, Any, Any, Any]:
    """(config, full model, backbone, head) with the run's ``<which>.weights.h5`` loaded."""
    return _load(run_dir / "model.json", run_dir / f"{which}.weights.h5")


def load_float(artifacts: Path = ARTIFACTS) -> tuple[Any, Any, Any, Any]:
    """The shipped float model (reference for parity tests and the float rows of the model card)."""
    return _load(artifacts / FLOAT_MODEL_JSON, artifacts / FLOAT_WEIGHTS)


def _load(config: Path, weights: Path) -> tuple[Any, Any, Any, Any]:
    from models.mqn.model import MQNConfig, build_mqn

    cfg = MQNConfig.from_json(json.loads(config.read_text()))
    model, backbone, head = build_mqn(cfg)
    model.load_weights(weights)
    return cfg, model, backbone, head


def curves_meta(cfg: "MQNConfig") -> dict[str, Any]:
    """The curve convention the runtime slices with (``CurveSpec``): what the model was trained through."""
    return {
        "knots_nits": list(cfg.knots_nits),
        "floor": cfg.floor,
        "paired": cfg.peak_guide,
        "peak_ratio": cfg.peak_ratio,
        "saturation": cfg.saturation,
        "saturation_range": list(cfg.saturation_range),
    }


def calibration_crops(
    data_dir: Path, val_scenes: tuple[str, ...], n_per_scene: int, size: int, net: int
) -> np.ndarray:
    """Representative network inputs (uint8) from *training* scenes: synthesised and downscaled as trained."""
    train, _ = split_scenes(read_manifest(data_dir), val_scenes)
    bank = SceneBank(data_dir, train)
    samples = fixed_samples(bank, n_per_scene, (size, size), SynthesisConfig(), seed=777)
    return np.stack([downscale(s.sdr, (net, net)) for s in samples])


def convert_backbone(backbone: Any, crops: np.ndarray) -> bytes:
    """Full int8 PTQ of the backbone (uint8 in, float32 out), calibrated on ``crops`` (uint8 views)."""
    return convert_int8(backbone, {"sdr": crops.astype(np.float32) / 255.0})


def convert_head(head: Any) -> bytes:
    """Dynamic-range quantization of the head: int8 weights, float activations, builtin ops only."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(head)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(conv.convert())


def artifact_format(cfg: "MQNConfig") -> int:
    """The ``mqn.json`` format a model needs: what the runtime must feed the head and read from its grid."""
    if cfg.cell_stats:
        return 6  # the head also reads per-cell statistics of the full-resolution frame
    if cfg.saturation:
        return 5  # two log-saturations per cell after the curves
    if cfg.peak_guide:
        return 4  # a base and a peak curve per cell, blended per pixel by its peak weight
    return 3 if cfg.global_path else 2  # 3: the head also reads the low-resolution SDR (global path)


def export(
    run_dir: Path,
    out_dir: Path,
    data_dir: Path,
    n_per_scene: int = 3,
    size: int = 384,
    net: int = 128,
    which: str = "best",
) -> dict[str, Any]:
    """Convert both parts and write the metadata JSON; returns the metadata."""
    train_cfg = open_run(run_dir)
    cfg, model, backbone, head = load_trained(run_dir, which)
    crops = calibration_crops(data_dir, tuple(train_cfg["val_scenes"]), n_per_scene, size, net)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / BACKBONE_FILE).write_bytes(convert_backbone(backbone, crops))
    (out_dir / HEAD_FILE).write_bytes(convert_head(head))
    model.save_weights(out_dir / FLOAT_WEIGHTS)
    (out_dir / FLOAT_MODEL_JSON).write_text(json.dumps(cfg.to_json(), indent=2))
    meta = {
        "model": "mqn",
        "backbone": BACKBONE_FILE,
        "head": HEAD_FILE,
        "version": artifact_format(cfg),
        "cell_stats": cfg.cell_stats,
        "cell_channels": cell_stats.CHANNELS if cfg.cell_stats else 0,
        "output": "grid of monotone tone curves: per cell, PQ (SMPTE ST 2084) of output luminance at the "
        "input knots (PQ of the BT.2408 luminance, cd/m² below); knot 0 (black) maps to 0"
        + ("; the base curve's knots, then the peak curve's" if cfg.peak_guide else "")
        + ("; then log-saturation at black and at SDR white" if cfg.saturation else ""),
        "curves": curves_meta(cfg),
        "sdr_white_nits": 203.0,
        "peak_nits": cfg.peak_nits,
        "split": "int8 backbone (SDR -> features at 1/16); float head (features"
        + (" + the same SDR as float in [0, 1], for its per-frame global path" if cfg.global_path else "")
        + (" + per-cell statistics of the full-resolution frame" if cfg.cell_stats else "")
        + " -> curve knots)",
        "backbone_input": "uint8 non-linear SDR code values, RGB, NHWC, downscaled (Pillow bilinear)",
        "stride": STRIDE,
        "grid_stride": cfg.grid_stride,
        "fast_long_side": FAST_LONG_SIDE,
        "quality_long_side": QUALITY_LONG_SIDE,
        "peak_long_side": PEAK_LONG_SIDE if cfg.peak_guide and not cfg.cell_stats else 0,
        "architecture": cfg.to_json(),
        "params": int(model.count_params()),
        "calibration": {
            "frames": len(crops),
            "size": net,
            "source": f"training scenes, synthesised SDR views of {size}², downscaled to {net}²",
        },
        "weights": which,
        "training": training_summary(train_cfg),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return export_main(
        argv,
        prog="python -m models.export",
        description=__doc__,
        export=export,
        run="mqn_v38",
        out=ARTIFACTS,
        calibration_per_scene=3,
        shown=("backbone", "head", "params"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
