"""Reference-free artifact measures on real frames at native size, and before/after crops to look at.

Averages over smooth stills hid the outlines the first ``mqn`` drew on every night scene; these measures
look for exactly that, with no HDR reference needed:

* **reversal %**: neighbouring pixel pairs (1 and 2 px apart, both axes) whose SDR luma (BT.709 weights of
  8-bit codes) differs by at least 8 codes, but whose output luminance orders the other way by more than two
  10-bit PQ codes. A global curve scores 0; dark or coloured outlines along bright edges and halos score.
* **darkened %**: pixels the BT.2408 placement puts above 5 cd/m² that come out below half of it.
* **hue**: mean |ICtCp hue angle difference| (degrees) from the BT.2408 placement over the pixels it puts at
  5-150 cd/m² with visible chroma (|CtCp| > 0.01); NaN with fewer than 100 such pixels.
* **saturation**: over the same pixels, the median ratio of their distance from the D65 white in CIE 1976
  u'v' to the BT.2408 placement's (1 = the SDR's saturation; luminance does not enter, unlike |CtCp|). Below
  1 is the washed-out look users complain about in ITM output.
* **shadows**: the median log2 ratio (stops) of output luminance to the BT.2408 placement's over the pixels
  it puts at 0.1-3 cd/m² (NaN with fewer than 100). Not in the shared tool: above 0 is a raised black level,
  the milky shadows a scene-light target teaches (``mqn`` lifts them by up to a stop, MODEL_CARD.md).
* **p99.9**: the 99.9th percentile of output luminance (cd/m²): how far lights are expanded.

The definitions follow ``shared/tools/itm_artifacts.py`` so that numbers agree; this is our own code, used
by the test suite and by ``python -m models.mqn.visual_checks`` (table + PNG crops).
"""

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from models.mqn.metrics import ictcp
from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084
from service.colour.ycbcr import LUMA_BT709, LUMA_BT2020
from service.operators import Operator, create_operator

REPO_ROOT = Path(__file__).resolve().parents[2]
VIDEO_DIR = REPO_ROOT.parent / "shared" / "data" / "video"
LUMINANCE_BT2020 = np.array(LUMA_BT2020)
"""Luminance weights of linear BT.2020 RGB (the NCL luma coefficients)."""
DEFAULT_FRAMES = (
    ("aliasing_ferris-ref.mp4", (10, 30, 50)),
    ("bigbuckbunny.mp4", (0, 66, 120)),
    ("sintel.mp4", (100, 300, 500)),
    ("flickering_ref.mp4", (30,)),
    ("big_buck_bunny.mp4", (200, 700, 1200)),
)
"""The frames the shared artifact tool checks by default (clip, frame indices)."""

CROPS = (
    ("ferris_rim", "aliasing_ferris-ref.mp4", 30, (200, 380, 256, 256)),
    ("bunny_sky", "bigbuckbunny.mp4", 66, (0, 900, 256, 380)),
)
"""Before/after crops: name, clip, frame, (top, left, height, width) at native size."""


@dataclass(frozen=True)
class ArtifactScores:
    """The measures of one output frame (see the module docstring)."""

    reversal_pct: float
    darkened_pct: float
    hue_deg: float
    saturation: float
    shadow_stops: float
    p999_nits: float
    max_nits: float


def read_frames(
    clip: str, indices: tuple[int, ...], video_dir: Path = VIDEO_DIR
) -> list[npt.NDArray[np.uint8]]:
    """Decode the given frames of a shared clip as H x W x 3 uint8 R'G'B' (native size)."""
    from service.video.decode import VideoReader

    wanted = set(indices)
    found: dict[int, npt.NDArray[np.uint8]] = {}
    with VideoReader(video_dir / clip) as reader:
        index = 0
        for batch in reader.batches(8, max_frames=max(indices) + 1):
            for rgb in batch.rgb:
                if index in wanted:
                    found[index] = np.ascontiguousarray(rgb)
                index += 1
    return [found[i] for i in indices]


def _pq_luminance(nits_bt2020: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    y = np.clip(np.asarray(nits_bt2020, np.float64) @ LUMINANCE_BT2020, 0.0, 10000.0)
    return np.asarray(eotf_inverse_st2084(y), np.float64)


def _uv_chroma(nits_bt2020: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Distance from the D65 white in CIE 1976 u'v' (saturation, whatever the luminance)."""
    from service.colour.primaries import PRIMARIES_BT2020, matrix_rgb_to_xyz

    to_xyz = matrix_rgb_to_xyz(PRIMARIES_BT2020)

    def uv(xyz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        d = np.maximum(xyz[..., 0] + 15.0 * xyz[..., 1] + 3.0 * xyz[..., 2], 1e-12)
        return np.stack([4.0 * xyz[..., 0] / d, 9.0 * xyz[..., 1] / d], axis=-1)

    white = uv(to_xyz @ np.ones(3))
    return np.asarray(np.linalg.norm(uv(np.asarray(nits_bt2020, np.float64) @ to_xyz.T) - white, axis=-1))


def score(
    out: npt.NDArray[np.floating], sdr: npt.NDArray[np.uint8], bt2408: npt.NDArray[np.floating]
) -> ArtifactScores:
    """Measures of one output (H x W x 3 BT.2020 cd/m²) against its SDR frame and BT.2408 placement."""
    yo = _pq_luminance(out)
    ys = sdr.astype(np.float64) @ np.array(LUMA_BT709)
    bad = total = 0
    for axis in (0, 1):
        for d in (1, 2):
            n = ys.shape[axis]
            ds = np.take(ys, range(d, n), axis) - np.take(ys, range(n - d), axis)
            do = np.take(yo, range(d, n), axis) - np.take(yo, range(n - d), axis)
            sel = np.abs(ds) >= 8
            total += int(sel.sum())
            bad += int((sel & (np.sign(ds) * do < -2.0 / 1023)).sum())
    base = np.asarray(bt2408, np.float64) @ LUMINANCE_BT2020
    y = np.clip(np.asarray(out, np.float64), 0, None) @ LUMINANCE_BT2020
    lit = base > 5.0
    darkened = float((y < 0.5 * base)[lit].mean()) if lit.any() else 0.0
    io, ib = ictcp(np.clip(out, 0, 10000)), ictcp(np.clip(bt2408, 0, 10000))
    mask = (base > 5) & (base < 150) & (np.hypot(ib[..., 1], ib[..., 2]) > 0.01)
    dh = np.angle(np.exp(1j * (np.arctan2(io[..., 2], io[..., 1]) - np.arctan2(ib[..., 2], ib[..., 1]))))
    hue = float(np.degrees(np.abs(dh[mask])).mean()) if mask.sum() >= 100 else float("nan")
    chroma_out = _uv_chroma(np.clip(out, 0, None))[mask]
    chroma_base = _uv_chroma(np.clip(bt2408, 0, None))[mask]
    saturation = float(np.median(chroma_out / chroma_base)) if mask.sum() >= 100 else float("nan")
    dark = (base >= 0.1) & (base < 3.0)
    lift = np.log2(np.maximum(y[dark], 1e-6) / base[dark])
    shadows = float(np.median(lift)) if dark.sum() >= 100 else float("nan")
    return ArtifactScores(
        reversal_pct=100.0 * bad / max(total, 1),
        darkened_pct=100.0 * darkened,
        hue_deg=hue,
        saturation=saturation,
        shadow_stops=shadows,
        p999_nits=float(np.percentile(y, 99.9)),
        max_nits=float(y.max()),
    )


def operator_from_spec(spec: str) -> Operator:
    """``NAME`` or ``NAME@k=v,k=v`` (the shared tool's syntax) at a 1000 cd/m² peak."""
    name, _, params = spec.partition("@")
    kwargs: dict[str, str] = dict(kv.split("=", 1) for kv in params.split(",") if kv)
    return create_operator(name, peak_nits=1000.0, **kwargs)


def show_sdr(nits_bt2020: npt.NDArray[np.floating], white_nits: float) -> npt.NDArray[np.uint8]:
    """Render HDR light for an SDR screen: ``white_nits`` maps to white, BT.2020 -> BT.709, sRGB, clip."""
    from service.colour.primaries import PRIMARIES_BT709, PRIMARIES_BT2020, matrix_rgb_to_rgb
    from service.colour.sdr_transfer import eotf_inverse_srgb

    m = matrix_rgb_to_rgb(PRIMARIES_BT2020, PRIMARIES_BT709)
    rel = np.clip((np.asarray(nits_bt2020, np.float64) @ m.T) / white_nits, 0.0, 1.0)
    return np.round(np.asarray(eotf_inverse_srgb(rel)) * 255.0).astype(np.uint8)


def write_crops(out_dir: Path, specs: tuple[str, ...], video_dir: Path = VIDEO_DIR) -> list[Path]:
    """One PNG per crop and exposure: SDR | each operator, side by side, at native size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colour = ColourDescription.still()
    ops = {s: operator_from_spec(s) for s in specs}
    written = []
    for name, clip, index, (top, left, h, w) in CROPS:
        (frame,) = read_frames(clip, (index,), video_dir)
        crop = np.ascontiguousarray(frame[top : top + h, left : left + w])
        outs = {s: op(frame[None], colour)[0, top : top + h, left : left + w] for s, op in ops.items()}
        for white in (203.0, 1000.0):
            gap = np.full((h, 4, 3), 255, np.uint8)
            tiles = [crop] + [show_sdr(o, white) for o in outs.values()]
            strip = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
            path = out_dir / f"{name}_{int(white)}.png"
            Image.fromarray(strip).save(path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m models.mqn.visual_checks mqn mqn@mode=quality [--crops DIR]``."""
    p = argparse.ArgumentParser(prog="python -m models.mqn.visual_checks", description=__doc__.split("\n")[0])
    p.add_argument("ops", nargs="+", help="operators, NAME or NAME@k=v,k=v")
    p.add_argument("--video-dir", type=Path, default=VIDEO_DIR)
    p.add_argument("--crops", type=Path, default=None, help="also write before/after PNG crops here")
    p.add_argument("--json", type=Path, default=None, help="write the per-frame table as JSON")
    args = p.parse_args(argv)
    if not (args.video_dir / "MANIFEST.csv").exists():
        print(f"skipped: no clips at {args.video_dir}")
        return 0
    colour = ColourDescription.still()
    bt2408 = create_operator("bt2408", peak_nits=1000.0)
    frames = [
        (f"{clip}:{i}", f)
        for clip, idx in DEFAULT_FRAMES
        for i, f in zip(idx, read_frames(clip, idx, args.video_dir), strict=True)
    ]
    table: dict[str, dict[str, dict[str, float]]] = {}
    writer = csv.writer(sys.stdout, delimiter="\t")
    writer.writerow(
        ["operator", "frame", "reversal%", "darkened%", "hue", "saturation", "shadows", "p99.9", "max"]
    )
    for spec in args.ops:
        op = operator_from_spec(spec)
        for key, frame in frames:
            base = bt2408(frame[None], colour)[0]
            s = score(op(frame[None], colour)[0], frame, base)
            table.setdefault(spec, {})[key] = s.__dict__
            writer.writerow(
                [
                    spec,
                    key,
                    f"{s.reversal_pct:.3f}",
                    f"{s.darkened_pct:.3f}",
                    f"{s.hue_deg:.2f}",
                    f"{s.saturation:.3f}",
                    f"{s.shadow_stops:+.2f}",
                    f"{s.p999_nits:.0f}",
                    f"{s.max_nits:.0f}",
                ]
            )
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    if args.crops:
        for path in write_crops(args.crops, ("bt2408", "bt2446a", *args.ops), args.video_dir):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
