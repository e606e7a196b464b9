"""ExpandNet's rows of the model-card table: ``python -m models.evaluate --model expandnet``.

The same cases, metrics and views as MQN's table (:mod:`models.harness.evaluation`: fixed views of the
held-out scenes, absolute and shape views, mid-tone ratio, highlights), with the classical baselines beside
it, the exported (int8 + float) model and, if its float twin is there, the float model and how far apart they
are.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.expandnet.artifacts import ARTIFACTS, FLOAT_WEIGHTS, META_FILE
from models.harness.evaluation import (
    PEAK,
    FloatTwin,
    baseline_operators,
    evaluation_main,
    score_with_float,
)
from service.operators import Operator
from service.operators.expandnet import ExpandNet, ExpandNetEngine
from service.timing import StageClock

QUANTIZED = "expandnet (int8+float)"
FLOAT = "expandnet (float)"


class FloatPredictor(FloatTwin):
    """The float Keras twin behind the operator's runtime interface (parity tests, float rows)."""

    def run(self, frames: npt.NDArray[np.uint8], view: npt.NDArray[np.uint8], clock: StageClock) -> Any:
        """Float forward pass: logit offsets, N x H x W x 3."""
        unit = np.float32(1.0 / 255.0)
        feats = self.features(
            [frames.astype(np.float32) * unit, view.astype(np.float32) * unit], training=False
        )
        clock.lap("backbone")
        out = np.asarray(self.head(feats, training=False), np.float32)
        clock.lap("head")
        return out


def float_operator(artifacts: Path, peak_nits: float = PEAK) -> ExpandNet:
    """The ``expandnet`` operator running the exported float twin (TensorFlow) instead of LiteRT."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.expandnet.export import load_float

    meta = json.loads((artifacts / META_FILE).read_text())
    _, _, features, head = load_float(artifacts)
    return ExpandNet(peak_nits, engine=FloatPredictor(features, head, meta))


def methods(artifacts: Path) -> dict[str, Operator]:
    """Every row: the baselines, the exported model and, if its float weights exist, the float twin."""
    ops = baseline_operators()
    ops[QUANTIZED] = ExpandNet(PEAK, engine=ExpandNetEngine(artifacts, num_threads=2))
    if (artifacts / FLOAT_WEIGHTS).exists():
        ops[FLOAT] = float_operator(artifacts)
    return ops


def evaluate(cases: list[dict[str, Any]], ops: dict[str, Operator]) -> dict[str, dict[str, float]]:
    """Run every method on every case; per-method aggregates, seconds per case, quantized vs float."""
    return score_with_float(cases, ops, QUANTIZED, FLOAT)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return evaluation_main(
        argv,
        model="expandnet",
        description=__doc__,
        artifacts=ARTIFACTS,
        methods=methods,
        served=QUANTIZED,
        twin=FLOAT,
    )


if __name__ == "__main__":
    raise SystemExit(main())
