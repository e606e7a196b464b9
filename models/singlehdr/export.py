"""Export a trained SingleHDR to LiteRT: ``python -m models.export --model singlehdr --run singlehdr_v1``.

* ``singlehdr_deq_int8.tflite``: the dequantization U-Net, full-integer PTQ calibrated on synthesised views
  of the *training* scenes; uint8 input (the frame, scale 1/255: raw pixels go straight in), float32 output
  (the bounded residual in code values). It reads 8-bit codes and writes a residual within ±``deq_scale``,
  so 8 bits hold both ends.
* ``singlehdr_head_dr.tflite``: everything after it (linearization, mask, hallucination, refinement) with
  float activations and int8 weights (dynamic range): its tensors are linear light and a response curve,
  which 8 bits cannot hold (linear shadows would fall into the first code), and every stage reads the one
  before it. Inputs: the frame as float32 codes in [0, 1] and the residual; output: the logit.
* ``singlehdr.json``: the output convention, the stride, the fast mode's size, provenance.
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
from models.singlehdr.artifacts import (
    ARTIFACTS,
    FEATURES_FILE,
    FLOAT_MODEL_JSON,
    FLOAT_WEIGHTS,
    HEAD_FILE,
    META_FILE,
)
from service.operators.learned import FAST_LONG_SIDE
from service.operators.singlehdr import FRAME_INPUT


def load_model(config: Path, weights: Path) -> tuple[Any, Any]:
    """(config, built network) with ``weights`` loaded."""
    from models.singlehdr.model import SingleHDRConfig, build_singlehdr

    return load_network(SingleHDRConfig, build_singlehdr, config, weights)


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
    from models.singlehdr.model import count_macs

    train_cfg = open_run(run_dir)
    cfg, net = load_model(run_dir / "model.json", run_dir / f"{which}.weights.h5")
    samples = calibration_samples(data_dir, tuple(train_cfg["val_scenes"]), n_per_scene, size)
    frames = np.stack([s.sdr for s in samples]).astype(np.float32) / 255.0
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FEATURES_FILE).write_bytes(convert_int8(net.features, {FRAME_INPUT: frames}))
    (out_dir / HEAD_FILE).write_bytes(convert_head(net.head))
    net.model.save_weights(out_dir / FLOAT_WEIGHTS)
    (out_dir / FLOAT_MODEL_JSON).write_text(json.dumps(cfg.to_json(), indent=2))
    h, w = 288, FAST_LONG_SIDE
    meta = {
        "model": "singlehdr",
        "features": FEATURES_FILE,
        "head": HEAD_FILE,
        "version": 1,
        "output": "per pixel and channel, a logit z of the PQ range: PQ (SMPTE ST 2084) of BT.709 light = "
        "PQ(peak_nits) * sigmoid(z); the operator applies z - logit(PQ(BT.2408 placement) / PQ(peak_nits)), "
        "upsampled from the network's size, to the frame's own placement",
        "sdr_white_nits": 203.0,
        "peak_nits": cfg.peak_nits,
        "stride": cfg.stride,
        "fast_long_side": FAST_LONG_SIDE,
        "split": "int8 dequantization U-Net (residual); float-activation head (linearization, mask, "
        "hallucination, refinement -> logit)",
        "inputs": "uint8 non-linear SDR code values, RGB, NHWC, sides multiples of the stride (features); "
        "the same as float32 / 255 and the residual (head)",
        "architecture": cfg.to_json(),
        "params": int(net.model.count_params()),
        "gmacs_1080p": count_macs(cfg, 1080, 1920) / 1e9,
        "gmacs_fast_1080p": count_macs(cfg, h, w) / 1e9,
        **provenance(len(frames), size, which, train_cfg),
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return export_main(
        argv,
        prog="python -m models.export --model singlehdr",
        description=__doc__,
        export=export,
        run="singlehdr_v1",
        out=ARTIFACTS,
        calibration_per_scene=2,
        shown=("features", "head", "params", "gmacs_1080p", "gmacs_fast_1080p"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
