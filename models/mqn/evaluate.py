"""Model-card evaluation: ``python -m models.evaluate`` regenerates the quality table.

Cases: fixed, seeded views of the held-out validation scenes, each rendered to SDR by the training synthesis
(so the SDR side varies as real content does). Every method sees the same 8-bit SDR and its colour tag.

Two views, both sides clipped at the 1000 cd/m² peak, metrics in linear BT.2020 cd/m²:

* **absolute**: the scene-linear reference scaled once per case so its mid-tones sit where BT.2408 puts the
  SDR's (SDR white <-> 203 cd/m², :func:`models.mqn.convention.reference_nits`); outputs judged as they are.
* **shape**: the reference scaled to each output's own mid-tones. It forgives global brightness errors, so
  it rewards over-bright mid-tones (the scaled reference saturates at the peak and matches for free): read
  it together with the absolute view and the mid-tone ratio, never alone.

Also reported: the output/reference mid-tone ratio (geometric mean over cases; 1.0 = on convention) and a
highlights-only PU21-PSNR on the pixels clipped in the SDR (absolute view).
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.harness.evaluation import (
    BASELINES,
    M709_2020,
    PEAK,
    aggregate,
    evaluation_parser,
    make_cases,
    run_evaluation,
    score_case,
    score_methods,
)
from models.harness.results import markdown
from models.mqn.artifacts import FLOAT_WEIGHTS
from models.mqn.data import REPO_ROOT
from models.mqn.metrics import pu21_psnr
from service.inference.engine import Predictor
from service.operators import Operator, create_operator
from service.operators.curve_grid import CurveSpec, with_coarse_peaks
from service.timing import StageClock

# The cases, scores and table format are the harness's (shared with every model); re-exported here, where
# they were first written, so that code and scripts importing them from MQN's evaluation keep working.
__all__ = [
    "BASELINES",
    "M709_2020",
    "PEAK",
    "FloatPredictor",
    "PeaksFrom",
    "aggregate",
    "evaluate",
    "keras_sequence",
    "main",
    "make_cases",
    "markdown",
    "methods",
    "score_case",
]


class FloatPredictor:
    """The float Keras model behind the same interface as the LiteRT engine (for float-vs-int8 rows)."""

    def __init__(self, model: Any, meta: dict[str, Any]) -> None:
        self.model = model
        self._meta = meta

    @property
    def stride(self) -> int:
        """Same stride as the exported model."""
        return int(self._meta.get("stride", 32))

    @property
    def meta(self) -> dict[str, Any]:
        """Artefact metadata."""
        return self._meta

    def run(
        self,
        sdr: npt.NDArray[np.uint8],
        clock: StageClock | None = None,
        cells: npt.NDArray[np.float32] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Float forward pass of backbone and head: the curve grid (one pass: no split to time)."""
        view = sdr.astype(np.float32) / 255.0
        inputs = [view, cells] if len(self.model.inputs) == 2 else view
        return np.asarray(self.model(inputs, training=False), np.float32)


View = npt.NDArray[np.uint8]
Grid = npt.NDArray[np.float32]


class PeaksFrom:
    """One model's curve grid with its peak curves taken from another model run on the same view.

    Why: a network trained from scratch on small views (``mqn_v50``, model card) has the best averages so far
    but no lamps, because its peak curve was learnt where no lamp is resolved and no retune lifted it. This
    scores that model with a peak curve that was learnt (the shipped one's): base curves and saturation are
    the first model's, the peak curves the second's, kept at or above the base ones
    (:func:`service.operators.curve_grid.with_coarse_peaks`). Both must share the curve convention.
    """

    def __init__(self, base: Predictor, peaks: Predictor) -> None:
        curves, theirs = base.meta["curves"], peaks.meta["curves"]
        paired = curves.get("paired") and theirs.get("paired")
        if not paired or curves["knots_nits"] != theirs["knots_nits"]:
            raise ValueError("both models need paired curves at the same knots to swap their peak curves")
        self.base = base
        self.peaks = peaks
        self.stride = base.stride  # views are sized for the base model
        self.meta = base.meta
        self.spec = CurveSpec(tuple(curves["knots_nits"]), float(curves["floor"]), PEAK, paired=True)

    def run(self, sdr: View, clock: StageClock | None = None, cells: Grid | None = None) -> Grid:
        """The base model's grid, peak curves from the other model's grid of the same view."""
        return with_coarse_peaks(self.base.run(sdr, clock, cells), self.peaks.run(sdr, clock), self.spec)


def keras_sequence(backbone: Any, head: Any) -> Any:
    """SDR in [0, 1] [and the cell statistics] -> curve knots: the float network the LiteRT files quantize."""
    import keras

    from models.mqn.model import run_head

    sdr = keras.Input((None, None, 3), name="sdr")
    if len(head.inputs) < 3:
        return keras.Model(sdr, run_head(head, backbone(sdr), sdr), name="mqn_float")
    cells = keras.Input(tuple(head.inputs[2].shape[1:]), name="cells")
    return keras.Model([sdr, cells], run_head(head, backbone(sdr), sdr, cells), name="mqn_float")


def methods(artifacts: Path, run_dir: Path | None, peaks_from: Path | None = None) -> dict[str, Operator]:
    """Every row of the table: baselines, mqn quantized (LiteRT) and, if float weights exist, mqn float.

    ``peaks_from`` names another exported model whose peak curves replace this one's (:class:`PeaksFrom`);
    the float rows are then left out, having no such twin.
    """
    from service.inference.engine import ModelFiles, MQNEngine
    from service.operators.mqn import MQN

    ops: dict[str, Operator] = {name: create_operator(name, peak_nits=PEAK) for name in BASELINES}
    engine: Predictor = MQNEngine(ModelFiles.load(artifacts), num_threads=2)
    if peaks_from is not None:
        engine = PeaksFrom(engine, MQNEngine(ModelFiles.load(peaks_from), num_threads=2))
    float_dir = run_dir if run_dir is not None else artifacts
    if peaks_from is None and (float_dir / FLOAT_WEIGHTS).exists():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from models.mqn.export import curves_meta, load_float

        cfg, _, backbone, head = load_float(float_dir)
        # The float model slices with its own convention, whichever LiteRT files sit in ``artifacts``.
        fp = FloatPredictor(keras_sequence(backbone, head), {**engine.meta, "curves": curves_meta(cfg)})
        ops["mqn fast (float)"] = MQN(PEAK, "fast", engine=fp)
        ops["mqn quality (float)"] = MQN(PEAK, "quality", engine=fp)
    ops["mqn fast (int8+DR)"] = MQN(PEAK, "fast", engine=engine)
    ops["mqn quality (int8+DR)"] = MQN(PEAK, "quality", engine=engine)
    return ops


def evaluate(cases: list[dict[str, Any]], ops: dict[str, Operator]) -> dict[str, dict[str, float]]:
    """Run every method on every case; per-method aggregates (plus seconds per case)."""
    table, kept = score_methods(cases, ops, keep=lambda name: name.startswith("mqn"))
    # Quantized vs float directly (not through the reference): how much the int8 backbone costs.
    for mode in ("fast", "quality"):
        q, f = kept.get(f"mqn {mode} (int8+DR)"), kept.get(f"mqn {mode} (float)")
        if q and f:
            psnr = float(np.mean([pu21_psnr(a, b, PEAK) for a, b in zip(q, f, strict=True)]))
            table[f"mqn {mode} (int8+DR)"]["pu21_psnr_vs_float"] = psnr
    return table


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = evaluation_parser(
        "python -m models.evaluate",
        __doc__,
        artifacts=REPO_ROOT / "models" / "artifacts",
        out=REPO_ROOT / "models" / "results" / "eval.json",
    )
    p.add_argument("--float-dir", type=Path, default=None, help="float weights dir (default: artifacts)")
    p.add_argument(
        "--peaks-from", type=Path, default=None, help="exported model whose peak curves to use (PeaksFrom)"
    )
    args = p.parse_args(argv)
    return run_evaluation(
        args, lambda cases: evaluate(cases, methods(args.artifacts, args.float_dir, args.peaks_from))
    )


if __name__ == "__main__":
    raise SystemExit(main())
