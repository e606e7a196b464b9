"""Eyeball the training pairs: ``python -m models.mqn.preview --out /tmp/mqn_preview -n 12``.

Writes one PNG per sample: [SDR as synthesised | HDR target | bt2408 placement], the HDR images shown
linearly scaled so 1000 cd/m² is display white (203 cd/m² SDR white lands at ~48% code, so expanded
highlights visibly stand out above it). Meta (curve, EV, transfer, JPEG...) goes into the file name.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from models.mqn.convention import pq_to_nits
from models.mqn.data import (
    DEFAULT_DATA_DIR,
    SceneBank,
    SynthesisConfig,
    encode_sdr,
    read_manifest,
    split_scenes,
)


def show_hdr(pq: np.ndarray, peak: float = 1000.0) -> np.ndarray:
    """PQ code -> 8-bit sRGB with ``peak`` cd/m² at white (a faithful linear view, no tone curve)."""
    return np.round(encode_sdr(np.clip(pq_to_nits(pq) / peak, 0, 1), "srgb") * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m models.mqn.preview", description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=Path("/tmp/mqn_preview"))
    p.add_argument("-n", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("train", "val"), default="train")
    args = p.parse_args(argv)
    train, val = split_scenes(read_manifest(args.data_dir))
    bank = SceneBank(args.data_dir, train if args.split == "train" else val)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        s = bank.sample(rng, (args.size, args.size), SynthesisConfig())
        row = np.concatenate([s.sdr, show_hdr(s.target), show_hdr(s.base)], axis=1)
        tag = "_".join(f"{k}-{v:.2f}" if isinstance(v, float) else f"{k}-{v}" for k, v in s.meta.items())
        Image.fromarray(row).save(args.out / f"{i:03d}_{tag.replace('.exr', '')}.png")
    print(f"wrote {args.n} previews to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
