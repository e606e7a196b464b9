"""How far ``mqn`` expands the ferris wheel's lamps, per network view size: ``python -m bench.lamps``.

Issue 10 asks for lamps at ≥ 600 cd/m² (p99.9 of output luminance) on the ferris frames that
``../shared/tools/itm_artifacts.py`` checks. That tool runs the operator's modes as shipped; this one also
sweeps the network's view (``--sizes``), because the lamps have followed the view size more than anything
trained (model card, ``mqn_v8`` and ``mqn_v10``). Frames are decoded by the service's reader at native size
and tagged as stills (sRGB), as the tool's PNG frames are; its ffmpeg decode differs slightly, so figures
agree to ~2 %, not exactly. ``ITM_MQN_DIR`` picks a candidate model, as for the operator.
"""

import argparse
from pathlib import Path

import numpy as np

from models.mqn.visual_checks import DEFAULT_FRAMES, VIDEO_DIR, read_frames
from service.colour.description import ColourDescription
from service.colour.ycbcr import LUMA_BT2020
from service.operators.registry import create_operator

FERRIS = DEFAULT_FRAMES[0]
"""The ferris frames of ``itm_artifacts.py`` (clip, frame numbers)."""


def lamp_level(nits: np.ndarray) -> float:
    """p99.9 of the output's BT.2020 luminance, cd/m²."""
    return float(np.percentile(nits @ np.asarray(LUMA_BT2020), 99.9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="", help="network long sides to sweep (default: each mode's own)")
    parser.add_argument("--modes", default="fast,quality")
    parser.add_argument("--video", type=Path, default=VIDEO_DIR)
    args = parser.parse_args(argv)
    clip, numbers = FERRIS
    if not (args.video / clip).exists():
        parser.error(f"{args.video / clip} not found: the shared clips are needed")
    frames = read_frames(clip, numbers, args.video)
    colour = ColourDescription.still()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"{'mode':8} {'view px':>7} " + " ".join(f"{'frame ' + str(n):>10}" for n in numbers))
    for mode in args.modes.split(","):
        op = create_operator("mqn", peak_nits=1000.0, mode=mode)
        for size in sizes or [op.long_side]:
            if sizes:  # a sweep measures one network view: no second pass for the peak curves (quality mode)
                op.long_side, op.peak_long_side = size, 0
            levels = [lamp_level(op(frame[None], colour)[0]) for frame in frames]
            print(f"{mode:8} {size:7d} " + " ".join(f"{v:10.0f}" for v in levels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
