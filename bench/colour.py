"""Colour packing benchmark: linear BT.2020 nits -> yuv420p10le planes (PQ, NCL matrix, 4:2:0, 10-bit).

Prints ms/frame at 720p and 1080p for the fused kernel, the NumPy reference path, and a plain NumPy copy of
the output planes (the memory-traffic floor) measured in the same run, with ratios against that floor.

    .venv/bin/python -m bench.colour [--frames N]
"""

import argparse
import time

import numpy as np

from bench._report import line, write
from service.colour.kernels import nits_to_yuv420p10
from service.colour.pq import eotf_inverse_st2084
from service.colour.tags import Range
from service.colour.ycbcr import LUMA_BT2020, quantize, rgb_to_ycbcr, subsample_420_left


def numpy_reference(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pq = eotf_inverse_st2084(frame)
    y = quantize(rgb_to_ycbcr(pq, LUMA_BT2020), 10, Range.MPEG)[..., 0]
    sub = np.stack([subsample_420_left(pq[..., c]) for c in range(3)], axis=-1)
    c = quantize(rgb_to_ycbcr(sub, LUMA_BT2020), 10, Range.MPEG)
    return y, c[..., 1], c[..., 2]


def timed(fn, frames: int) -> float:
    fn()  # untimed warm-up (JIT compile, page faults)
    for _ in range(2):
        fn()
    start = time.perf_counter()
    for _ in range(frames):
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    cases = []
    for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        rng = np.random.default_rng(0)
        frame = (rng.random((h, w, 3), dtype=np.float32) ** 3 * 1200.0).astype(np.float32)
        planes = nits_to_yuv420p10(frame)
        dst = tuple(np.empty_like(p) for p in planes)

        def copy_planes(planes=planes, dst=dst) -> None:
            for s, d in zip(planes, dst, strict=True):
                np.copyto(d, s)

        floor = timed(copy_planes, args.frames)
        kernel = timed(lambda frame=frame, planes=planes: nits_to_yuv420p10(frame, planes), args.frames)
        ref_frames = max(3, args.frames // 10)
        reference = timed(lambda frame=frame: numpy_reference(frame), ref_frames)
        for case, seconds, n in [
            (f"copy planes {name}", floor, args.frames),
            (f"fused kernel {name}", kernel, args.frames),
            (f"numpy reference {name}", reference, ref_frames),
        ]:
            print(line(case, n, seconds))
            cases.append({"case": case, "frames": n, "seconds": seconds, "ms_per_frame": 1e3 * seconds / n})
        ratio = (kernel / args.frames) / (floor / args.frames)
        speedup = (reference / ref_frames) / (kernel / args.frames)
        print(
            f"  {name}: kernel = {ratio:.1f}x the plane copy, {speedup:.1f}x faster than the numpy reference"
        )
    print(f"results: {write('colour', cases)}")


if __name__ == "__main__":
    main()
