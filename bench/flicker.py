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
from typing import Any

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


STILL_DPQ = 1e-6
"""Mean |ΔPQ| of ``bt2408`` below which a clip's frames are taken as unchanging: no ratio to form."""


def clip_case(frames: int, measured: tuple[float, float], reference: tuple[float, float]) -> dict[str, Any]:
    """One operator's deltas on one clip and their ratios to ``bt2408``'s (``reference``).

    A clip whose ``bt2408`` output does not change (a still opening) has no flicker to compare: its ratios
    are None, where a division would report 0 for every operator.
    """
    (pix, glob), (ref_pix, ref_glob) = measured, reference
    still = ref_pix < STILL_DPQ
    return {
        "frames": frames,
        "mean_abs_dpq": pix,
        "mean_abs_dmean_pq": glob,
        "ratio_pix_vs_bt2408": None if still else pix / ref_pix,
        "ratio_glob_vs_bt2408": None if still else glob / max(ref_glob, 1e-9),
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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
        for name, measured in outs.items():
            case = {"clip": clip, "operator": name, **clip_case(len(rgb), measured, outs["bt2408"])}
            cases.append(case)
            print(
                f"{clip:28s} {name:18s} |ΔPQ| {measured[0]:.5f} (x{_ratio(case['ratio_pix_vs_bt2408'])})  "
                f"|Δmean| {measured[1]:.5f} (x{_ratio(case['ratio_glob_vs_bt2408'])})"
            )
    out = write("flicker", cases)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
