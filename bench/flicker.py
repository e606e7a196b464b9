"""Temporal stability of the operators on the shared SDR clips: ``python -m bench.flicker``.

Every frame is converted independently (no temporal filtering anywhere), so any flicker is the operator
amplifying frame-to-frame change. Per clip and operator, on the first ``--frames`` frames:

* ``pix``: mean |ΔPQ| between consecutive output frames, per pixel (BT.2020 RGB PQ code, 1.0 = 10,000 cd/m²);
* ``glob``: mean |Δ mean PQ| of consecutive frames (global brightness pumping, what viewers see as flicker).

Both are reported as a ratio to ``bt2408`` (the SDR placed at 203 cd/m², which changes exactly as much as
the input does). An expanding operator is expected to be somewhat above 1 (it stretches contrast); the test is
whether ``mqn`` stays in the range of the per-pixel ``bt2446a`` curve, which cannot flicker on its own.
"""

import argparse
from pathlib import Path

import numpy as np

from bench._report import write
from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084
from service.operators import create_operator
from service.video.decode import VideoReader

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
DEFAULT_CLIPS = ("bikes.mp4", "big_buck_bunny.mp4", "flickering_ref.mp4", "aliasing_ferris-ref.mp4")


def deltas(frames_nits: list[np.ndarray]) -> tuple[float, float]:
    """(mean per-pixel |ΔPQ|, mean |Δ frame-mean PQ|) over consecutive frames."""
    pq = [np.asarray(eotf_inverse_st2084(f), np.float32) for f in frames_nits]
    pix = np.mean([np.abs(a - b).mean() for a, b in zip(pq[1:], pq[:-1], strict=True)])
    glob = np.mean([abs(float(a.mean() - b.mean())) for a, b in zip(pq[1:], pq[:-1], strict=True)])
    return float(pix), float(glob)


def read_clip(path: Path, frames: int) -> tuple[np.ndarray, ColourDescription]:
    """The first ``frames`` frames of a clip (N x H x W x 3 uint8 R'G'B', native size) and its colour tags."""
    with VideoReader(path) as reader:
        rgb = np.concatenate([b.rgb for b in reader.batches(8, max_frames=frames)])
        return rgb, reader.info.colour


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS))
    p.add_argument("--operators", nargs="*", default=["bt2408", "bt2446a", "inverse_reinhard", "mqn:fast"])
    args = p.parse_args()
    if not DATA.exists():
        print(f"skipped: no clips at {DATA}")
        return 0
    ops = {}
    for spec in args.operators:
        name, _, mode = spec.partition(":")
        params: dict[str, float | str] = {"peak_nits": 1000.0}
        if mode:
            params["mode"] = mode
        ops[spec] = create_operator(name, **params)
    cases = []
    for clip in args.clips:
        rgb, colour = read_clip(DATA / clip, args.frames)
        outs = {name: deltas([op(f[None], colour)[0] for f in rgb]) for name, op in ops.items()}
        ref_pix, ref_glob = outs["bt2408"]
        for name, (pix, glob) in outs.items():
            case = {
                "clip": clip,
                "operator": name,
                "frames": len(rgb),
                "mean_abs_dpq": pix,
                "mean_abs_dmean_pq": glob,
                "ratio_pix_vs_bt2408": pix / max(ref_pix, 1e-9),
                "ratio_glob_vs_bt2408": glob / max(ref_glob, 1e-9),
            }
            cases.append(case)
            print(
                f"{clip:28s} {name:18s} |ΔPQ| {pix:.5f} (x{case['ratio_pix_vs_bt2408']:.2f})  "
                f"|Δmean| {glob:.5f} (x{case['ratio_glob_vs_bt2408']:.2f})"
            )
    out = write("flicker", cases)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
