"""Export a trained region-map ConvLSTM to LiteRT: ``python -m models.export --model region_lstm``.

* ``region_lstm_sparam_int8.tflite``: SParam-Net, full-integer PTQ calibrated on synthesised views of the
  *training* scenes; uint8 input (the 256² view and its region maps, scale 1/255: code values go straight
  in), float32 output (the four curve logits). It reads 8-bit codes and gives four bounded numbers, so 8
  bits hold both ends: the paper's feature extractor.
* ``region_lstm_head_dr.tflite``: everything after it (pseudo-HDR curve, region maps, the unrolled ConvLSTM,
  the FSRCNN decoder, the offset) with float activations and int8 weights (dynamic range): its tensors are
  linear light, PQ codes and a recurrent cell state carried over five steps, which 8 bits cannot hold.
  Inputs: the frame as float32 codes, its anchor (PQ), the bounds and the curve logits; output: the offsets.
* ``region_lstm.json``: the output convention, the stride, SParam-Net's view size, the fast mode's size,
  provenance.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.harness.cli import export_main
from models.harness.export import (
    calibration_samples,
    convert_int8,
    load_network,
    open_run,
    provenance,
)
from models.mqn.data import DEFAULT_DATA_DIR
from models.mqn.export import convert_head  # dynamic range: int8 weights, float activations, builtin ops
from models.region_lstm.artifacts import (
    ARTIFACTS,
    FEATURES_FILE,
    FLOAT_MODEL_JSON,
    FLOAT_WEIGHTS,
    HEAD_FILE,
    META_FILE,
)
from service.operators.learned import FAST_LONG_SIDE
from service.operators.region_lstm import SPARAM_INPUT, network_inputs


def load_model(config: Path, weights: Path) -> tuple[Any, Any]:
    """(config, built network) with ``weights`` loaded."""
    from models.region_lstm.model import RegionLSTMConfig, build_region_lstm

    return load_network(RegionLSTMConfig, build_region_lstm, config, weights)


def load_float(artifacts: Path = ARTIFACTS) -> tuple[Any, Any]:
    """The exported float twin (reference for parity tests and the float rows of evaluation)."""
    return load_model(artifacts / FLOAT_MODEL_JSON, artifacts / FLOAT_WEIGHTS)


def export(
    run_dir: Path,
    out_dir: Path,
    data_dir: Path = DEFAULT_DATA_DIR,
    n_per_scene: int = 2,
    size: int = 256,
    which: str = "best",
) -> dict[str, Any]:
    """Convert both parts, save the float twin and write the metadata JSON; returns the metadata."""
    from models.region_lstm.model import count_macs

    train_cfg = open_run(run_dir)
    cfg, net = load_model(run_dir / "model.json", run_dir / f"{which}.weights.h5")
    samples = calibration_samples(data_dir, tuple(train_cfg["val_scenes"]), n_per_scene, size)
    sparam_view, _, _ = network_inputs(np.stack([s.sdr for s in samples]), cfg.sparam_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration = {SPARAM_INPUT: sparam_view.astype(np.float32) / 255.0}
    (out_dir / FEATURES_FILE).write_bytes(convert_int8(net.features, calibration))
    (out_dir / HEAD_FILE).write_bytes(convert_head(net.head))
    net.model.save_weights(out_dir / FLOAT_WEIGHTS)
    (out_dir / FLOAT_MODEL_JSON).write_text(json.dumps(cfg.to_json(), indent=2))
    meta = {
        "model": "region_lstm",
        "features": FEATURES_FILE,
        "head": HEAD_FILE,
        "version": 1,
        "output": "per pixel and channel, a logit offset z from the BT.2408 placement: PQ (SMPTE ST 2084) of "
        "BT.709 light = PQ(peak_nits) * sigmoid(logit(PQ(placement) / PQ(peak_nits)) + z), upsampled from "
        "the network's size when it ran smaller",
        "sdr_white_nits": 203.0,
        "peak_nits": cfg.peak_nits,
        "stride": cfg.stride,
        "sparam_size": cfg.sparam_size,
        "fast_long_side": FAST_LONG_SIDE,
        "split": "int8 SParam-Net (curve logits); float-activation head (pseudo-HDR, region maps, ConvLSTM, "
        "FSRCNN decoder -> offsets)",
        "inputs": "SParam-Net: uint8 view and region maps, NHWC, 18 channels; head: float32 codes / 255, "
        "PQ of the BT.2408 placement, region bounds, curve logits; sides multiples of the stride",
        "architecture": cfg.to_json(),
        "params": int(net.model.count_params()),
        "gmacs_1080p": count_macs(cfg, 1080, 1920) / 1e9,
        "gmacs_fast_1080p": count_macs(cfg, 288, FAST_LONG_SIDE) / 1e9,
        **provenance(len(samples), size, which, train_cfg),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return export_main(
        argv,
        prog="python -m models.export --model region_lstm",
        description=__doc__,
        export=export,
        run="region_lstm_v1",
        out=ARTIFACTS,
        calibration_per_scene=2,
        shown=("features", "head", "params", "gmacs_1080p", "gmacs_fast_1080p"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
