"""The model-card table's cases, metrics and run, shared by every model's ``python -m models.evaluate``.

Cases: fixed, seeded views of the held-out validation scenes, each rendered to SDR by the training synthesis
(so the SDR side varies as real content does). Every method sees the same 8-bit SDR and its colour tag, and
is scored in linear BT.2020 cd/m², both sides clipped at the 1000 cd/m² peak, against the absolute and the
shape reference (:mod:`models.mqn.evaluate` explains the two). One definition here, so that MQN's and
ExpandNet's rows are measured alike and can stand in one table.
"""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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
from models.mqn.metrics import delta_e_itp, pq_ssim, psnr_of_pu21_mse, pu21_mse, pu21_psnr
from service.colour.description import ColourDescription
from service.colour.primaries import PRIMARIES_BT709, PRIMARIES_BT2020, matrix_rgb_to_rgb
from service.operators import Operator, create_operator

PEAK = 1000.0
BASELINES = ("bt2408", "bt2446a", "inverse_reinhard")
M709_2020 = matrix_rgb_to_rgb(PRIMARIES_BT709, PRIMARIES_BT2020).astype(np.float32)

Table = dict[str, dict[str, float]]


class FloatTwin:
    """Base of the float Keras twins that stand in for an exported model's LiteRT engine (parity, float rows).

    It holds the two parts as the export split them and the exported metadata; each model's subclass adds
    the ``run`` of its operator's runtime interface, feeding the parts what its LiteRT engine feeds them.
    """

    def __init__(self, features: Any, head: Any, meta: dict[str, Any]) -> None:
        self.features = features
        self.head = head
        self.meta = meta


def baseline_operators() -> dict[str, Operator]:
    """The classical rows every model's table starts with, at the evaluation's peak."""
    return {name: create_operator(name, peak_nits=PEAK) for name in BASELINES}


CASES_SEED = 2026
"""Seed of every model card's held-out cases since v1."""


def make_cases(
    data_dir: Path, per_scene: int, size: tuple[int, int], seed: int = CASES_SEED
) -> list[dict[str, Any]]:
    """Fixed validation cases: SDR uint8, its colour tag, the scene view (BT.709 linear), scene name.

    Fixed per ``size``, not across sizes: every draw comes from one stream, and how many numbers a case
    draws depends on its size (a photo's crop range, the noise field), so two sizes give two sets of views.
    """
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
        res["highlight_pu21_mse"] = pu21_mse(out, ref_abs, PEAK, mask=clipped)
    return res


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean over cases (geometric for the mid-tone ratio; highlights over the cases that have them).

    The highlights' PSNR is taken of their mean squared error, not averaged per case: a case whose clipped
    pixels an output matches exactly (reference and output both at the peak) scores over 100 dB on its own
    and moved the mean of 21 cases by 5-8 dB, more than any model change did (``mqn_v14`` at a 128 px view).
    """
    keys = {k for r in rows for k in r}
    out: dict[str, float] = {}
    for k in sorted(keys):
        vals = np.array([r[k] for r in rows if k in r], np.float64)
        out[k] = float(np.exp(np.mean(np.log(vals)))) if k == "midtone_ratio" else float(vals.mean())
    if "highlight_pu21_mse" in out:
        out["highlight_pu21_psnr"] = psnr_of_pu21_mse(out["highlight_pu21_mse"])
    out["cases"] = len(rows)
    out["highlight_cases"] = sum("highlight_pu21_mse" in r for r in rows)
    return out


def score_methods(
    cases: list[dict[str, Any]], ops: dict[str, Operator], keep: Callable[[str], bool]
) -> tuple[Table, dict[str, list[npt.NDArray[np.float32]]]]:
    """Run every method on every case: per-method aggregates (plus seconds per case), printed as they come.

    Parameters
    ----------
    keep : callable
        Which methods' outputs to return (for quantized-vs-float comparisons): the rest are dropped case
        by case, since a table of many methods at full view size would otherwise hold every output.
    """
    table: Table = {}
    kept: dict[str, list[npt.NDArray[np.float32]]] = {}
    for name, op in ops.items():
        rows = []
        t = 0.0
        for case in cases:
            t0 = time.perf_counter()
            out = op(case["sdr"][None], case["colour"])[0]
            t += time.perf_counter() - t0
            rows.append(score_case(out, case))
            if keep(name):
                kept.setdefault(name, []).append(out)
        table[name] = aggregate(rows) | {"s_per_case": t / len(cases)}
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in table[name].items()})}", flush=True)
    return table, kept


def score_with_float(cases: list[dict[str, Any]], ops: dict[str, Operator], served: str, twin: str) -> Table:
    """:func:`score_methods`, plus how far the ``served`` row's outputs are from its float ``twin``'s.

    The distance is the mean PU21-PSNR of the served output against the twin's (``pu21_psnr_vs_float`` in
    the served row), when the twin is among ``ops``.
    """
    table, kept = score_methods(cases, ops, keep=lambda name: name in (served, twin))
    if twin in kept:
        pairs = zip(kept[served], kept[twin], strict=True)
        table[served]["pu21_psnr_vs_float"] = float(np.mean([pu21_psnr(a, b, PEAK) for a, b in pairs]))
    return table


def evaluation_parser(
    prog: str, description: str | None, artifacts: Path, out: Path
) -> argparse.ArgumentParser:
    """The options of every model's evaluation (scenes, artefacts, cases, view size, output); add your own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--artifacts", type=Path, default=artifacts)
    p.add_argument("--per-scene", type=int, default=3)
    p.add_argument(
        "--seed",
        type=int,
        default=CASES_SEED,
        help="seed of the views and their SDR; the card's tables use the default (a wider screen: "
        "--per-scene 20 --seed 7)",
    )
    p.add_argument("--size", default="640x360", help="WxH of each validation view")
    p.add_argument("--out", type=Path, default=out)
    return p


def run_evaluation(args: argparse.Namespace, table_of: Callable[[list[dict[str, Any]]], Table]) -> int:
    """Make the cases ``args`` ask for, score them with ``table_of``, write and print the table.

    Without scenes at ``--data-dir`` it says so and succeeds (``skipped: ...``), as the benchmarks do on a
    machine without the data.
    """
    from models.harness.results import write_table

    w, h = (int(v) for v in args.size.split("x"))
    if not (args.data_dir / "MANIFEST.csv").exists():
        print(f"skipped: no scenes at {args.data_dir}")
        return 0
    cases = make_cases(args.data_dir, args.per_scene, (h, w), args.seed)
    table = table_of(cases)
    print(write_table(args.out, table, len(cases), (w, h)))
    return 0


def evaluation_main(
    argv: list[str] | None,
    *,
    model: str,
    description: str | None,
    artifacts: Path,
    methods: Callable[[Path], dict[str, Operator]],
    served: str,
    twin: str,
) -> int:
    """``python -m models.evaluate --model <model>``: its rows (``methods``), the served one beside its twin.

    Writes ``models/results/eval_<model>.{json,md}`` unless ``--out`` says otherwise.
    """
    p = evaluation_parser(
        f"python -m models.evaluate --model {model}",
        description,
        artifacts=artifacts,
        out=REPO_ROOT / "models" / "results" / f"eval_{model}.json",
    )
    args = p.parse_args(argv)
    return run_evaluation(args, lambda cases: score_with_float(cases, methods(args.artifacts), served, twin))
