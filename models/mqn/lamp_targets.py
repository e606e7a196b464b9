"""What the training targets say about lamp-like SDR pixels: ``python -m models.mqn.lamp_targets``.

The ferris-wheel lamps of real night video sit at 0.90-0.975 of SDR white, unclipped, in dark surroundings,
and ITM should expand them several-fold; bright skies at the same level should not be. A network learns
what its targets say, so check the data before training on it: for near-white pixels (luminance 0.85-0.95 of
white, brightest channel >= 0.95) this prints the median of target / BT.2408 placement, and the share >= 3,
split by the median luminance of their 48-px cell (dark < 0.2 of white, bright >= 0.5). A synthesis that
teaches "night lamps are bright, skies are not" has a dark median well above the bright one
(models/results/lamps_diagnosis.md). ``peak`` is the same band among pixels the peak curve serves (peak weight
>= 0.5 at ``--peak-ratio``): with a peak-guided model those are the targets its peak curve learns.
"""

import argparse
import json

import numpy as np

from models.mqn.convention import luminance, pq_to_nits
from models.mqn.data import DEFAULT_DATA_DIR, SceneBank, SynthesisConfig, read_manifest, split_scenes
from service.operators.curve_grid import peak_weight

CELL = 48
BAND = (0.85, 0.95)


def band_ratios(
    bank: SceneBank, cfg: SynthesisConfig, views: int, seed: int, size: int = 384, peak_ratio: float = 1.0
) -> dict[str, list[float]]:
    """Target / placement luminance ratios of the near-white band per context, over ``views`` samples."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {"dark": [], "bright": [], "peak": []}
    for _ in range(views):
        s = bank.sample(rng, (size, size), cfg)
        y = luminance(s.linear) / 203.0
        ratio = luminance(pq_to_nits(s.target)) / np.maximum(y * 203.0, 1e-3)
        cells = np.median(y.reshape(size // CELL, CELL, size // CELL, CELL).swapaxes(1, 2), axis=(2, 3))
        context = np.repeat(np.repeat(cells, CELL, axis=0), CELL, axis=1)
        band = (y >= BAND[0]) & (y <= BAND[1]) & (s.linear.max(axis=-1) / 203.0 >= 0.95)
        out["dark"].append(ratio[band & (context < 0.2)])
        out["bright"].append(ratio[band & (context >= 0.5)])
        out["peak"].append(ratio[band & (peak_weight(y[None] * 203.0, peak_ratio)[0] >= 0.5)])
    return {k: np.concatenate(v).tolist() for k, v in out.items()}


def summary(ratios: list[float]) -> dict[str, float | int | None]:
    """Count, median and share >= 3 of one context's ratios."""
    r = np.asarray(ratios)
    if not r.size:
        return {"pixels": 0, "median": None, "share_ge_3": None}
    return {
        "pixels": int(r.size),
        "median": round(float(np.median(r)), 2),
        "share_ge_3": round(float((r >= 3).mean()), 3),
    }


def main() -> None:
    """Print the band's statistics per seed (one JSON line each)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--views", type=int, default=120)
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    p.add_argument(
        "--synthesis",
        type=json.loads,
        default={},
        help="SynthesisConfig fields as JSON, as in a training config, e.g. '{\"p_video_knee\": 0.5}'",
    )
    p.add_argument("--peak-ratio", type=float, default=1.0, help="the model's peak_ratio (peak context)")
    args = p.parse_args()
    train, _ = split_scenes(read_manifest(DEFAULT_DATA_DIR))
    bank = SceneBank(DEFAULT_DATA_DIR, train)
    cfg = SynthesisConfig(**args.synthesis)
    for seed in args.seeds:
        ratios = band_ratios(bank, cfg, args.views, seed, peak_ratio=args.peak_ratio)
        print(json.dumps({"seed": seed, **{k: summary(v) for k, v in ratios.items()}}))


if __name__ == "__main__":
    main()
