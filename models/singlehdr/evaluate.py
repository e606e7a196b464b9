"""SingleHDR's rows of the model-card table: ``python -m models.evaluate --model singlehdr``.

The same cases, metrics and views as MQN's and ExpandNet's tables (:mod:`models.harness.evaluation`), with
the classical baselines beside it, the exported (int8 + float) model in both modes and, if its float twin is
there, the float model in ``fast`` mode and how far the exported one is from it.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.harness.evaluation import PEAK, FloatTwin, baseline_operators, evaluation_main
from models.singlehdr.artifacts import ARTIFACTS, FLOAT_WEIGHTS, META_FILE
from service.operators import Operator
from service.operators.singlehdr import SingleHDR, SingleHDREngine
from service.timing import StageClock

QUANTIZED = "singlehdr fast (int8+float)"
QUALITY = "singlehdr quality (int8+float)"
FLOAT = "singlehdr fast (float)"


class FloatPredictor(FloatTwin):
    """The float Keras twin behind the operator's runtime interface (parity tests, float rows)."""

    def run(self, frames: npt.NDArray[np.uint8], clock: StageClock) -> Any:
        """Float forward pass: logits, N x H x W x 3."""
        unit = frames.astype(np.float32) * np.float32(1.0 / 255.0)
        residual = np.asarray(self.features(unit, training=False), np.float32)
        clock.lap("backbone")
        out = np.asarray(self.head([unit, residual], training=False), np.float32)
        clock.lap("head")
        return out


def float_operator(artifacts: Path, peak_nits: float = PEAK, mode: str = "fast") -> SingleHDR:
    """The ``singlehdr`` operator running the exported float twin (TensorFlow) instead of LiteRT."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.singlehdr.export import load_float

    meta = json.loads((artifacts / META_FILE).read_text())
    _, net = load_float(artifacts)
    return SingleHDR(peak_nits, mode, engine=FloatPredictor(net.features, net.head, meta))


def methods(artifacts: Path) -> dict[str, Operator]:
    """Every row: the baselines, the exported model in both modes, the float twin if its weights exist."""
    ops = baseline_operators()
    engine = SingleHDREngine(artifacts, num_threads=2)
    ops[QUANTIZED] = SingleHDR(PEAK, "fast", engine=engine)
    ops[QUALITY] = SingleHDR(PEAK, "quality", engine=engine)
    if (artifacts / FLOAT_WEIGHTS).exists():
        ops[FLOAT] = float_operator(artifacts)
    return ops


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return evaluation_main(
        argv,
        model="singlehdr",
        description=__doc__,
        artifacts=ARTIFACTS,
        methods=methods,
        served=QUANTIZED,
        twin=FLOAT,
    )


if __name__ == "__main__":
    raise SystemExit(main())
