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

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.mqn.artifacts import FLOAT_WEIGHTS
from models.mqn.convention import midtone_mask, midtone_scale, reference_nits
from models.mqn.data import (
    DEFAULT_DATA_DIR,
    DEFAULT_VAL_SCENES,
    REPO_ROOT,
    SceneBank,
    SynthesisConfig,
    decode_sdr,
    read_manifest,
    split_scenes,
)
from models.mqn.metrics import delta_e_itp, pq_ssim, pu21_psnr
from service.colour.description import ColourDescription
from service.colour.primaries import PRIMARIES_BT709, PRIMARIES_BT2020, matrix_rgb_to_rgb
from service.operators import Operator, create_operator
from service.timing import StageClock

PEAK = 1000.0
BASELINES = ("bt2408", "bt2446a", "inverse_reinhard")
M709_2020 = matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020).astype(np.float32)


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

    def run(self, sdr: npt.NDArray[np.uint8], clock: StageClock | None = None) -> npt.NDArray[np.float32]:
        """Float forward pass of backbone and head: the curve grid (one pass: no split to time)."""
        return np.asarray(self.model(sdr.astype(np.float32) / 255.0, training=False), np.float32)


def keras_sequence(backbone: Any, head: Any) -> Any:
    """SDR in [0, 1] -> curve knots: the float network that the two LiteRT files quantize."""
    import keras

    from models.mqn.model import run_head

    sdr = keras.Input((None, None, 3), name="sdr")
    return keras.Model(sdr, run_head(head, backbone(sdr), sdr), name="mqn_float")


def make_cases(
    data_dir: Path, per_scene: int, size: tuple[int, int], seed: int = 2026
) -> list[dict[str, Any]]:
    """Fixed validation cases: SDR uint8, its colour tag, the scene view (BT.709 linear), scene name."""
    _, val = split_scenes(read_manifest(data_dir), DEFAULT_VAL_SCENES)
    bank = SceneBank(data_dir, val)
    rng = np.random.default_rng(seed)
    # Uniformly aimed views (no bright-spot aiming): the same cases as every earlier model card.
    cfg = SynthesisConfig(fov_deg=(55.0, 90.0), pitch_deg=(-15.0, 25.0), p_bright=0.0)
    cases = []
    for i, scene in enumerate(val):
        for _ in range(per_scene):
            s = bank.sample(rng, size, cfg, index=i)
            transfer = str(s.meta["transfer"])
            colour = ColourDescription.still() if transfer == "srgb" else ColourDescription.video()
            cases.append(
                {
                    "scene": scene.file,
                    "sdr": s.sdr,
                    "colour": colour,
                    "transfer": transfer,
                    "view": s.scene,
                    "meta": s.meta,
                }
            )
    return cases


def score_case(out: npt.NDArray[np.float32], case: dict[str, Any]) -> dict[str, float]:
    """All metrics of one output (H x W x 3 BT.2020 cd/m²) against one case."""
    sdr_display = decode_sdr(case["sdr"].astype(np.float32) / 255.0, case["transfer"])
    mask = midtone_mask(sdr_display)
    ref_abs = reference_nits(case["view"], sdr_display, PEAK) @ M709_2020.T
    view2020 = case["view"] @ M709_2020.T
    s = midtone_scale(np.clip(out, 0, PEAK), view2020, mask)
    ref_shape = np.clip(view2020 * s, 0.0, PEAK)
    out = np.clip(out, 0.0, PEAK)
    clipped = case["sdr"].max(axis=-1) >= 250
    res = {
        "abs_pu21_psnr": pu21_psnr(out, ref_abs, PEAK),
        "abs_pq_ssim": pq_ssim(out, ref_abs, PEAK),
        "abs_de_itp": delta_e_itp(out, ref_abs, PEAK),
        "shape_pu21_psnr": pu21_psnr(out, ref_shape, PEAK),
        "shape_pq_ssim": pq_ssim(out, ref_shape, PEAK),
        "shape_de_itp": delta_e_itp(out, ref_shape, PEAK),
        "midtone_ratio": midtone_scale(out, ref_abs, mask),
    }
    if clipped.mean() > 0.002:
        res["highlight_pu21_psnr"] = pu21_psnr(out, ref_abs, PEAK, mask=clipped)
    return res


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean over cases (geometric for the mid-tone ratio; highlights over the cases that have them)."""
    keys = {k for r in rows for k in r}
    out: dict[str, float] = {}
    for k in sorted(keys):
        vals = np.array([r[k] for r in rows if k in r], np.float64)
        out[k] = float(np.exp(np.mean(np.log(vals)))) if k == "midtone_ratio" else float(vals.mean())
    out["cases"] = len(rows)
    out["highlight_cases"] = sum("highlight_pu21_psnr" in r for r in rows)
    return out


def methods(artifacts: Path, run_dir: Path | None) -> dict[str, Operator]:
    """Every row of the table: baselines, mqn quantized (LiteRT) and, if float weights exist, mqn float."""
    from service.inference.engine import ModelFiles, MQNEngine
    from service.operators.mqn import MQN

    ops: dict[str, Operator] = {name: create_operator(name, peak_nits=PEAK) for name in BASELINES}
    engine = MQNEngine(ModelFiles.load(artifacts), num_threads=2)
    float_dir = run_dir if run_dir is not None else artifacts
    if (float_dir / FLOAT_WEIGHTS).exists():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from models.mqn.export import load_float

        _, _, backbone, head = load_float(float_dir)
        fp = FloatPredictor(keras_sequence(backbone, head), engine.meta)
        ops["mqn fast (float)"] = MQN(PEAK, "fast", engine=fp)
        ops["mqn quality (float)"] = MQN(PEAK, "quality", engine=fp)
    ops["mqn fast (int8+DR)"] = MQN(PEAK, "fast", engine=engine)
    ops["mqn quality (int8+DR)"] = MQN(PEAK, "quality", engine=engine)
    return ops


def evaluate(cases: list[dict[str, Any]], ops: dict[str, Operator]) -> dict[str, dict[str, float]]:
    """Run every method on every case; per-method aggregates (plus seconds per case)."""
    table = {}
    kept: dict[str, list[npt.NDArray[np.float32]]] = {}
    for name, op in ops.items():
        rows = []
        t = 0.0
        for case in cases:
            t0 = time.perf_counter()
            out = op(case["sdr"][None], case["colour"])[0]
            t += time.perf_counter() - t0
            rows.append(score_case(out, case))
            if name.startswith("mqn"):
                kept.setdefault(name, []).append(out)
        table[name] = aggregate(rows) | {"s_per_case": t / len(cases)}
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in table[name].items()})}", flush=True)
    # Quantized vs float directly (not through the reference): how much the int8 backbone costs.
    for mode in ("fast", "quality"):
        q, f = kept.get(f"mqn {mode} (int8+DR)"), kept.get(f"mqn {mode} (float)")
        if q and f:
            psnr = float(np.mean([pu21_psnr(a, b, PEAK) for a, b in zip(q, f, strict=True)]))
            table[f"mqn {mode} (int8+DR)"]["pu21_psnr_vs_float"] = psnr
    return table


def markdown(table: dict[str, dict[str, float]]) -> str:
    """The model-card table."""
    head = (
        "| method | abs PU21-PSNR ↑ | abs PQ-SSIM ↑ | abs ΔE_ITP ↓ | shape PU21-PSNR ↑ | shape PQ-SSIM ↑ "
        "| shape ΔE_ITP ↓ | mid-tone ratio | highlights PU21-PSNR ↑ |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {n} | {r['abs_pu21_psnr']:.2f} | {r['abs_pq_ssim']:.4f} | {r['abs_de_itp']:.2f} "
        f"| {r['shape_pu21_psnr']:.2f} | {r['shape_pq_ssim']:.4f} | {r['shape_de_itp']:.2f} "
        f"| {r['midtone_ratio']:.3f} | {r.get('highlight_pu21_psnr', float('nan')):.2f} |"
        for n, r in table.items()
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--artifacts", type=Path, default=REPO_ROOT / "models" / "artifacts")
    p.add_argument("--float-dir", type=Path, default=None, help="float weights dir (default: artifacts)")
    p.add_argument("--per-scene", type=int, default=3)
    p.add_argument("--size", default="640x360", help="WxH of each validation view")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "results" / "eval.json")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    if not (args.data_dir / "MANIFEST.csv").exists():
        print(f"skipped: no scenes at {args.data_dir}")
        return 0
    cases = make_cases(args.data_dir, args.per_scene, (h, w))
    table = evaluate(cases, methods(args.artifacts, args.float_dir))
    md = markdown(table)
    print(md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "table": table,
                "cases": len(cases),
                "size": [w, h],
                "scenes": list(DEFAULT_VAL_SCENES),
                "peak_nits": PEAK,
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )
    args.out.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
