"""MQN latency on this machine: ``python -m bench.mqn_latency`` (LiteRT, XNNPACK, batch 1).

Fixed synthetic 1920x1080 RGB24 input (smooth gradients + a bright window). One untimed warm-up call, then a
timed window per case. "model" is the two interpreters only (int8 backbone + float head) on the frame already
downscaled to the mode's processing size, returning the grid of tone curves; "operator" adds everything the
``mqn`` operator does around them (the Pillow-exact downscale, slicing the curve grid at full resolution by
each pixel's own luminance, BT.2020 conversion). Writes ``models/results/latency.json`` (the model card's
table) and ``bench/results/mqn_latency.json``.
"""

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench._report import line, write
from models.mqn.artifacts import ARTIFACTS

ROOT = Path(__file__).resolve().parents[1]


def frame_1080p() -> np.ndarray:
    """Deterministic 1 x 1080 x 1920 x 3 uint8 test frame."""
    y, x = np.mgrid[0:1080, 0:1920].astype(np.float32)
    img = np.stack([x / 1920 * 200 + 20, y / 1080 * 180 + 30, (x + y) / 3000 * 150 + 40], -1)
    img[200:500, 700:1100] = 255
    return img.astype(np.uint8)[None]


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Warm up once, then return ``repeats`` wall times in ms."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.mqn_latency", description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quality-repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "models" / "results" / "latency.json")
    args = p.parse_args(argv)
    from service.colour.description import ColourDescription
    from service.inference.engine import ModelFiles, MQNEngine
    from service.operators.mqn import MQN, processing_size
    from service.operators.resample import resize_bilinear

    engine = MQNEngine(ModelFiles.load(ARTIFACTS), num_threads=args.threads)
    frame = frame_1080p()
    colour = ColourDescription.video()
    cases: dict[str, tuple[Callable[[], object], int]] = {}
    for mode, repeats in (("fast", args.repeats), ("quality", args.quality_repeats)):
        operator = MQN(1000.0, mode, engine=engine)
        ph, pw = processing_size(1080, 1920, operator.long_side, engine.stride)
        small = resize_bilinear(frame, ph, pw)
        cells = engine.zero_cells(1, ph, pw)
        cases[f"mqn {mode} model ({pw}x{ph})"] = (
            lambda small=small, cells=cells: engine.run(small, cells=cells),
            repeats,
        )
        cases[f"mqn {mode} operator (1920x1080)"] = (lambda op=operator: op(frame, colour), repeats)
    results = {}
    for name, (fn, n) in cases.items():
        ms = timed(fn, n)
        med = statistics.median(ms)
        results[name] = {"median_ms": med, "min_ms": min(ms), "repeats": n}
        print(line(name, n, sum(ms) / 1e3))
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "cases": results,
                "threads": args.threads,
                "batch": 1,
                "device": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "git_sha": sha.strip(),
            },
            indent=2,
        )
    )
    write(
        "mqn_latency", [{"case": name, **value, "threads": args.threads} for name, value in results.items()]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
