"""MQN latency on this machine: ``python -m models.mqn.benchmark`` (LiteRT, XNNPACK, batch 1).

Fixed synthetic 1920x1080 RGB24 input (smooth gradients + a bright window). One untimed warm-up call, then a
timed window per case. "model" is the two interpreters only (what the ≤ 40 ms fast-mode target is about);
"operator" adds everything the ``mqn`` operator does around them (resize, LUTs, guided upsampling, PQ
decode, BT.2020 conversion). Writes ``models/results/latency.json``.
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

from models.mqn.artifacts import ARTIFACTS
from models.mqn.data import REPO_ROOT


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
    p = argparse.ArgumentParser(prog="python -m models.mqn.benchmark", description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quality-repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "results" / "latency.json")
    args = p.parse_args(argv)
    from service.colour.description import ColourDescription
    from service.inference.engine import ModelFiles, MQNEngine
    from service.operators.mqn import MQN, processing_size

    engine = MQNEngine(ModelFiles.load(ARTIFACTS), num_threads=args.threads)
    frame = frame_1080p()
    colour = ColourDescription.video()
    ph, pw = processing_size(1080, 1920, int(engine.meta["fast_long_side"]))
    small = np.ascontiguousarray(frame[:, :ph, :pw])
    base_small = np.full(small.shape, 0.5, np.float32)
    base_full = np.full(frame.shape, 0.5, np.float32)
    fast, quality = MQN(1000.0, "fast", engine=engine), MQN(1000.0, "quality", engine=engine)
    cases = {
        f"mqn fast model ({pw}x{ph})": (lambda: engine.run(small, base_small), args.repeats),
        "mqn fast operator (1920x1080)": (lambda: fast(frame, colour), args.repeats),
        "mqn quality model (1920x1088)": (lambda: engine.run(frame, base_full), args.quality_repeats),
        "mqn quality operator (1920x1080)": (lambda: quality(frame, colour), args.quality_repeats),
    }
    results = {}
    for name, (fn, n) in cases.items():
        ms = timed(fn, n)
        med = statistics.median(ms)
        results[name] = {"median_ms": med, "min_ms": min(ms), "repeats": n}
        print(f"'{name}': {n} frames in {sum(ms) / 1e3:.2f} s => {med:.1f} ms/frame ({1e3 / med:.1f} FPS)")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT).stdout
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
