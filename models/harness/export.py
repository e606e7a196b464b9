"""What every model's export shares: TensorFlow set-up, the run's config and summary, loading, int8 PTQ."""

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_SEED = 777
"""MQN's calibration seed: every model is calibrated on the same training views, drawn the same way."""


def open_run(run_dir: Path) -> dict[str, Any]:
    """Quiet 2-thread TensorFlow, and the run's ``config.json`` (its split picks the calibration views)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialised (e.g. inside a test session)
        tf.config.threading.set_intra_op_parallelism_threads(2)
    config: dict[str, Any] = json.loads((run_dir / "config.json").read_text())
    return config


def training_summary(train_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The run's ``summary.json`` for the artefact's provenance, or None if it was never written."""
    from models.mqn.data import REPO_ROOT

    path = REPO_ROOT / train_cfg["log_root"] / train_cfg["run"] / "summary.json"  # absolute roots win
    summary: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
    return summary


def provenance(frames: int, size: int, which: str, train_cfg: dict[str, Any]) -> dict[str, Any]:
    """The export metadata's record of where an artefact came from: calibration, weights, training run."""
    return {
        "calibration": {"frames": frames, "size": size, "source": "training scenes, synthesised SDR views"},
        "weights": which,
        "training": training_summary(train_cfg),
    }


def load_network(
    config_type: Any, build: Callable[[Any], Any], config: Path, weights: Path
) -> tuple[Any, Any]:
    """(config, built network) from a run's or an export's config JSON, with ``weights`` loaded.

    For the models whose ``build`` returns one object holding the whole Keras model as ``.model`` (and its
    exported parts beside it); ``config_type`` is the model's config dataclass (``from_json``).
    """
    cfg = config_type.from_json(json.loads(config.read_text()))
    net = build(cfg)
    net.model.load_weights(weights)
    return cfg, net


def calibration_samples(
    data_dir: Path, val_scenes: tuple[str, ...], n_per_scene: int, size: int, seed: int = CALIBRATION_SEED
) -> list[Any]:
    """Representative views of the *training* scenes (``size`` square), synthesised as in training."""
    from models.mqn.data import SceneBank, SynthesisConfig, fixed_samples, read_manifest, split_scenes

    train, _ = split_scenes(read_manifest(data_dir), val_scenes)
    return fixed_samples(SceneBank(data_dir, train), n_per_scene, (size, size), SynthesisConfig(), seed=seed)


def convert_int8(model: Any, inputs: dict[str, np.ndarray]) -> bytes:
    """Full int8 PTQ of a Keras model: uint8 inputs (scale 1/255, raw pixels go straight in), float32 output.

    Parameters
    ----------
    inputs : dict
        Calibration data per input name, N x ... float32 in [0, 1] (the same N for every input).
    """
    import tensorflow as tf

    def representative() -> Iterator[dict[str, np.ndarray]]:
        # Exact 0 and 1 in one sample pin every input's range to [0, 1], so their uint8 scale is 1/255.
        first = {name: x[:1].copy() for name, x in inputs.items()}
        for x in first.values():
            x[0, 0, 0], x[0, 0, 1] = 0.0, 1.0
        yield first
        for i in range(len(next(iter(inputs.values())))):
            yield {name: x[i : i + 1] for name, x in inputs.items()}

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.float32
    with warnings.catch_warnings():
        # Two warnings TensorFlow raises about itself: it asks for input statistics it does not use here
        # (the representative data pins every input to [0, 1], which gives it its 1/255 scale, checked by
        # the LiteRT tests), and its calibrator runs the deprecated tf.lite.Interpreter.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        warnings.filterwarnings("ignore", ".*tf.lite.Interpreter is deprecated", UserWarning)
        return bytes(conv.convert())
