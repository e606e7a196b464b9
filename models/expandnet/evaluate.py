"""ExpandNet's rows of the model-card table: ``python -m models.evaluate --model expandnet``.

The same cases, metrics and views as MQN's table (:mod:`models.mqn.evaluate`: fixed views of the held-out
scenes, absolute and shape views, mid-tone ratio, highlights), with the classical baselines beside it, the
exported (int8 + float) model and, if its float twin is there, the float model and how far apart they are.
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.expandnet.artifacts import ARTIFACTS, FLOAT_WEIGHTS, META_FILE
from models.harness.results import write_table
from models.mqn.data import DEFAULT_DATA_DIR, REPO_ROOT
from models.mqn.evaluate import BASELINES, PEAK, aggregate, make_cases, score_case
from models.mqn.metrics import pu21_psnr
from service.operators import Operator, create_operator
from service.operators.expandnet import ExpandNet, ExpandNetEngine
from service.timing import StageClock

QUANTIZED = "expandnet (int8+float)"
FLOAT = "expandnet (float)"


class FloatPredictor:
    """The float Keras twin behind the operator's runtime interface (parity tests, float rows)."""

    def __init__(self, features: Any, head: Any, meta: dict[str, Any]) -> None:
        self.features = features
        self.head = head
        self.meta = meta

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
    ops: dict[str, Operator] = {name: create_operator(name, peak_nits=PEAK) for name in BASELINES}
    ops[QUANTIZED] = ExpandNet(PEAK, engine=ExpandNetEngine(artifacts, num_threads=2))
    if (artifacts / FLOAT_WEIGHTS).exists():
        ops[FLOAT] = float_operator(artifacts)
    return ops


def evaluate(cases: list[dict[str, Any]], ops: dict[str, Operator]) -> dict[str, dict[str, float]]:
    """Run every method on every case; per-method aggregates, seconds per case, quantized vs float."""
    table, kept = {}, {}
    for name, op in ops.items():
        rows, outs, t = [], [], 0.0
        for case in cases:
            t0 = time.perf_counter()
            out = op(case["sdr"][None], case["colour"])[0]
            t += time.perf_counter() - t0
            rows.append(score_case(out, case))
            outs.append(out)
        kept[name] = outs
        table[name] = aggregate(rows) | {"s_per_case": t / len(cases)}
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in table[name].items()})}", flush=True)
    if FLOAT in kept:
        pairs = zip(kept[QUANTIZED], kept[FLOAT], strict=True)
        table[QUANTIZED]["pu21_psnr_vs_float"] = float(np.mean([pu21_psnr(a, b, PEAK) for a, b in pairs]))
    return table


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m models.evaluate --model expandnet", description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS)
    p.add_argument("--per-scene", type=int, default=3)
    p.add_argument("--size", default="640x360", help="WxH of each validation view")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "results" / "eval_expandnet.json")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    if not (args.data_dir / "MANIFEST.csv").exists():
        print(f"skipped: no scenes at {args.data_dir}")
        return 0
    cases = make_cases(args.data_dir, args.per_scene, (h, w))
    table = evaluate(cases, methods(args.artifacts))
    print(write_table(args.out, table, len(cases), (w, h)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
