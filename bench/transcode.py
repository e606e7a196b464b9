"""Transcode benchmark: `convert` throughput and peak memory against a plain decode + encode (the floor).

For each codec (hevc, av1) and size (720p, 1080p) it measures, in the same run:

* ``floor``: decode H.264 -> swscale to yuv420p10le -> the same HDR10 encoder and settings, no operator;
* each of ``--operators`` (default ``bt2408``, ``bt2446a``, ``mqn``): the full
  :func:`service.pipeline.convert_video` with the defaults of ``itmstream convert`` (decode, operator,
  PQ/Y'CbCr kernel measuring MaxCLL/MaxFALL in the same pass, encode, remux with the measured light level),

and prints one line per case with its peak RSS, plus the ratio to the floor. Every timed run happens in a
fresh child process (imports, JIT cache load, one untimed 4-frame warm-up, then the timed run), so its peak
RSS (``ru_maxrss``) is what one ``itmstream convert`` of the clip costs, not what earlier cases left behind.
The input is fixed and synthetic (libx264 yuv420p, moving gradients plus noise, 25 fps) so runs compare; the
machine is shared, so treat the times as noisy (the JSON records the load average).

    .venv/bin/python -m bench.transcode [--frames N] [--repeat R] [--codecs hevc,av1] [--sizes 720p,1080p]
                                        [--operators bt2408,bt2446a,mqn]
"""

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench._report import line, write
from service.memory import map_large_blocks
from service.operators import create_operator
from service.pipeline import ConvertOptions, convert_video
from service.video.encode import EncodeOptions, HDR10Writer, container_format
from service.video.frames import yuv420p10_planes
from service.video.hdr10_metadata import ContentLightLevel, HDR10Metadata, MasteringDisplay

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def make_source(path: Path, width: int, height: int, frames: int) -> Path:
    """Synthetic SDR clip: gradients that move every frame plus fixed noise (so the encoder has work)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(-12, 12, (height, width, 3), dtype=np.int16)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(frames):
            img = np.empty((height, width, 3), np.int16)
            img[..., 0] = (x + 4 * i) % 256
            img[..., 1] = (y + 2 * i) % 256
            img[..., 2] = ((x + y) / 2 + 3 * i) % 256
            frame = av.VideoFrame.from_ndarray(np.clip(img + noise, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def floor(src: Path, dst: Path, codec: str) -> int:
    """Decode + 10-bit reformat + HDR10 encode, nothing else: what convert cannot beat."""
    frames = 0
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        with HDR10Writer(
            dst,
            format=container_format(dst),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            time_base=Fraction(stream.time_base),
            frame_rate=Fraction(stream.average_rate or 25),
            options=EncodeOptions(codec=codec),
            metadata=HDR10Metadata(MasteringDisplay(), ContentLightLevel(1000, 400)),
        ) as writer:
            for frame in inp.decode(stream):
                writer.write(yuv420p10_planes(frame.reformat(format="yuv420p10le")), int(frame.pts))
                frames += 1
    return frames


def _child_run(kind: str, src: str, dst: str, codec: str) -> dict[str, object]:
    """One timed run in this (fresh) process: a 4-frame warm-up, then the whole clip; time and peak RSS."""
    os.environ.setdefault("SVT_LOG", "1")
    map_large_blocks()  # as `itmstream convert` does first: the RSS is the command's
    src_path, dst_path = Path(src), Path(dst)
    if kind == "floor":
        floor(src_path, dst_path, codec)  # untimed: encoder start-up
        start = time.perf_counter()
        frames = floor(src_path, dst_path, codec)
        out: dict[str, object] = {"frames": frames, "seconds": time.perf_counter() - start}
    else:
        operator = create_operator(kind, peak_nits=1000.0)
        options = ConvertOptions(encode=EncodeOptions(codec=codec))
        warm = ConvertOptions(encode=options.encode, max_frames=4)
        convert_video(src_path, dst_path, operator, warm)  # untimed: JIT cache load, encoder start-up
        start = time.perf_counter()
        result = convert_video(src_path, dst_path, operator, options)
        out = {
            "frames": result.frames,
            "seconds": time.perf_counter() - start,
            "stage_seconds": result.timings,
            "max_cll": result.max_cll,
            "max_fall": result.max_fall,
        }
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return out


def measure(kind: str, src: Path, dst: Path, codec: str, repeat: int) -> dict[str, object]:
    """Best of ``repeat`` child-process runs (the machine is shared: slow runs are noise); the highest RSS."""
    runs = []
    for _ in range(repeat):
        # A spawned child per run: nothing inherited, nothing left over from the previous case.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(_child_run, kind, str(src), str(dst), codec).result())
    best = min(runs, key=lambda run: float(run["seconds"]))
    return best | {"peak_rss_mb": max(float(run["peak_rss_mb"]) for run in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--codecs", default="hevc,av1")
    parser.add_argument("--sizes", default="720p,1080p")
    parser.add_argument("--operators", default="bt2408,bt2446a,mqn")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per case; the fastest counts")
    args = parser.parse_args()
    os.environ.setdefault("SVT_LOG", "1")
    cases = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for size in args.sizes.split(","):
            width, height = SIZES[size]
            src = make_source(tmp / f"src_{size}.mp4", width, height, args.frames)
            for codec in args.codecs.split(","):
                dst = tmp / f"out_{size}_{codec}.mkv"
                base = measure("floor", src, dst, codec, args.repeat)
                base_s = float(base["seconds"])
                name = f"floor decode+encode {codec} {size}"
                print(line(name, int(base["frames"]), base_s) + f"  peak RSS {base['peak_rss_mb']:.0f} MB")
                cases.append({"case": name, **base, "ms_per_frame": 1e3 * base_s / int(base["frames"])})
                for op_name in args.operators.split(","):
                    run = measure(op_name, src, dst, codec, args.repeat)
                    frames, seconds = int(run["frames"]), float(run["seconds"])
                    name = f"convert {op_name} {codec} {size}"
                    print(
                        line(name, frames, seconds)
                        + f"  [{seconds / base_s:.2f}x the floor]  peak RSS {run['peak_rss_mb']:.0f} MB"
                    )
                    per_frame = {k: 1e3 * v / frames for k, v in run["stage_seconds"].items()}
                    print(f"    ms/frame by stage: {', '.join(f'{k} {v:.1f}' for k, v in per_frame.items())}")
                    cases.append(
                        {
                            "case": name,
                            **run,
                            "ms_per_frame": 1e3 * seconds / frames,
                            "ratio_to_floor": seconds / base_s,
                        }
                    )
    print(f"results: {write('transcode', cases)}")


if __name__ == "__main__":
    main()
