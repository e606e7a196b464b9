"""What every model's export does around its own conversion: TensorFlow set-up, run config, run summary."""

import contextlib
import json
import os
from pathlib import Path
from typing import Any


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
