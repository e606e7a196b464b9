r"""Scale-out benchmark (issue 12): one 1080p clip converted in-process and on a two-node local Ray cluster.

    .venv/bin/python -m bench.scale [--operator bt2408] [--seconds 30] [--segment-seconds 5] [--threads 2]

**Network namespace.** Some Ray agents listen on every interface whatever ``--node-ip-address`` says
(``../shared/notes/ray.md``), so the cluster must live in a private network namespace that has only loopback.
The simplest robust way is the one ``make test`` uses for the Ray tests, so the bench does it itself: when
it is not already in such a namespace it re-executes itself as

    unshare --net --pid --fork --mount-proc sh -c 'ip link set lo up && "$0" "$@"' \
        .venv/bin/python -m bench.scale ...

(root needed, as sessions and CI have; ``sh`` stays PID 1 of the namespace and reaps the Ray daemons
that ``ray start`` leaves orphaned, as in ``make test``). The PID namespace scopes ``ray stop`` (which finds
Ray processes by name) to this bench's own cluster, never another one on the machine, and the kernel ends
anything left when the bench exits. The bench starts the cluster (a head and one more node,
``--num-cpus 1`` each) and stops it in a ``finally``, then checks that no Ray process is left.

**Input.** The first ``--seconds`` of a shared SDR clip (``--clip``, read from ``../shared/data/video``'s
MANIFEST.csv), scaled to 1920x1080 and encoded H.264 with a keyframe every second and no scene-cut keyframes
(a fixed GOP, as streaming encodes have), audio copied: so ``--segment-seconds`` cuts it into equal segments
and the two nodes get equal shares, and the output copies an audio track as a real file's would.

**What is timed, in one run** (the machine is shared; the JSON records the load average):

* demux: the driver's two passes over the input, timed apart, best of 3 each:
  :func:`service.scaleout.split.plan_video` (probe, demux to the end, checks, cuts; before the first task)
  and :func:`service.scaleout.split.segment_inputs` consumed to the end (demux again, each segment's packets
  remuxed into an in-memory MP4; in a conversion this runs while the workers convert): seconds of 1080p
  video per second, and the bytes that go into the object store per second of video;
* in-process: :func:`service.pipeline.convert_video` on ``--threads`` threads (decoder, encoder and Numba),
  after an untimed 4-frame warm-up, before the cluster exists (its idle daemons would take CPU);
* two nodes: :func:`service.scaleout.cluster.convert_video_segmented` with one CPU per task, after an untimed
  warm-up conversion of a two-segment clip, so each node's worker has started and built its operator (the
  in-process run is warm too); per-segment worker seconds and nodes come from its ``on_segment`` events, and
  their times give the driver's serial parts: before the first task is queued, after the last one is done;
* mux: the driver's reassembly (:mod:`service.scaleout.assemble`: concatenation with the audio copied once,
  then :func:`service.pipeline.finalize`, timed apart) of the two-node output's segments, re-cut from it and
  held in memory as the driver holds what the workers return: seconds of video reassembled per second, and
  the output's bytes per second of video.

The like-for-like comparison is in-process on two threads against two one-CPU nodes on the same two cores.
Overhead = wall(two nodes) - wall(in-process); the issue's target is an overhead of at most 15 % of the
in-process time. The measured costs feed :func:`projected_wall_s`, the N-node projection in docs/SCALING.md.
"""

import argparse
import contextlib
import csv
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._report import line, write

if TYPE_CHECKING:
    from service.pipeline import ConversionResult
    from service.scaleout.cluster import SegmentEvent
    from service.scaleout.split import SplitVideo

ROOT = Path(__file__).resolve().parents[1]
VIDEO_DATA = ROOT.parent / "shared" / "data" / "video"
NETNS_MARK = "ITM_BENCH_SCALE_NETNS"
"""Set in the re-executed bench: it is inside the namespace, and must not re-execute again."""
RAY_PORT = 6390
NODE_ARGS = ("--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats")
OBJECT_STORE_BYTES = 1 << 30
"""Per node; a 5 s 1080p segment is a few MB each way, and the default (30 % of RAM) needs none of it."""
TARGET_OVERHEAD = 0.15
"""Issue 12: splitting and reassembly may add at most 15 % to the in-process time on the same cores."""
PROJECTED_NODES = (1, 2, 4, 8, 16, 32, 64, 128)
FILM_S = 90 * 60.0
"""The issue's example: a 90-minute film."""


# --- pure functions: the overhead and the N-node projection (tests/bench/test_scale.py) ------------------


def overhead(in_process_s: float, scaled_s: float) -> tuple[float, float]:
    """Extra seconds of the segmented run and their ratio to the in-process time (negative: it was faster)."""
    extra = scaled_s - in_process_s
    return extra, extra / in_process_s


@dataclass(frozen=True)
class ScaleModel:
    """What an N-node projection needs: per segment on a worker, per second of video on the driver.

    The driver's work splits into a serial part and an overlapped one, as ``convert_video_segmented`` runs it:
    the whole input is planned (demuxed and checked) and the first segment cut before the first task is
    submitted (serial); the other segments are cut, and the returned ones concatenated, in the driver's one
    thread while the workers convert (overlapped, except the last segment's concatenation); finalizing
    rewrites the whole output once the last segment is written (serial).
    """

    segment_s: float
    """Seconds of video per segment (``ITM_SEGMENT_SECONDS``, as cut)."""
    segment_wall_s: float
    """Worker seconds one segment takes on one task slot (mean of the measured segments)."""
    split_s_per_video_s: float
    """Driver, before the first task: the plan (probe, demux, checks, cuts), per second of video."""
    concat_s_per_video_s: float
    """Driver: concatenating returned segments (audio copied alongside), per second of video."""
    finalize_s_per_video_s: float
    """Driver: the light-level remux of the whole output, per second of video."""
    store_bytes_per_video_s: float
    """Compressed bytes through the object store per second of video: segment input plus encoded output."""
    cut_s_per_video_s: float = 0.0
    """Driver: demuxing again and remuxing each segment, per second of video (serial for the first one)."""


def projected_wall_s(model: ScaleModel, video_s: float, nodes: int) -> float:
    """Wall seconds to convert ``video_s`` of video on ``nodes`` task slots (one CPU each, as measured).

    The serial plan pass and the first segment's cut, then ``ceil(segments / nodes)`` waves of segments,
    paced by the slower of the workers and the driver (cutting the other segments and concatenating them
    all), then the last segment's concatenation and the finalize. Ray's own scheduling latency and uneven
    segments are not in it (the bench compares it with the measured run).
    """
    if nodes < 1 or video_s <= 0:
        raise ValueError(f"nodes {nodes} and video_s {video_s} must be >= 1 and > 0")
    segments = max(1, math.ceil(video_s / model.segment_s - 1e-9))
    waves = math.ceil(segments / nodes)
    one_segment_s = min(model.segment_s, video_s)
    driver = video_s * model.concat_s_per_video_s + (video_s - one_segment_s) * model.cut_s_per_video_s
    convert = max(waves * model.segment_wall_s, driver)
    last_concat = one_segment_s * model.concat_s_per_video_s
    first_cut = one_segment_s * model.cut_s_per_video_s
    serial = video_s * (model.split_s_per_video_s + model.finalize_s_per_video_s) + first_cut
    return serial + convert + last_concat


def concat_bound_nodes(model: ScaleModel) -> float:
    """Task slots beyond which the driver (cutting and concatenating in one thread) sets the pace.

    The slots deliver ``nodes x segment_s / segment_wall_s`` seconds of video per second; the driver cuts and
    concatenates ``1 / (cut_s_per_video_s + concat_s_per_video_s)``.
    """
    driver = model.cut_s_per_video_s + model.concat_s_per_video_s
    return model.segment_wall_s / (model.segment_s * driver)


def store_bytes_per_s(model: ScaleModel, nodes: int) -> float:
    """Object-store traffic through the driver (bytes/s) while ``nodes`` slots are all converting."""
    return nodes * model.segment_s / model.segment_wall_s * model.store_bytes_per_video_s


def projection(model: ScaleModel, video_s: float, nodes: Sequence[int]) -> list[dict[str, float]]:
    """The projection table: wall time, video seconds per second, speed-up over one slot, store traffic."""
    one = projected_wall_s(model, video_s, 1)
    rows = []
    for n in nodes:
        wall = projected_wall_s(model, video_s, n)
        rows.append(
            {
                "nodes": n,
                "wall_s": wall,
                "video_s_per_s": video_s / wall,
                "speedup": one / wall,
                "store_mbit_per_s": 8e-6 * store_bytes_per_s(model, n),
            }
        )
    return rows


# --- the namespace ---------------------------------------------------------------------------------------


def only_loopback() -> bool:
    """Whether this process sits in a network namespace whose only interface is loopback (asks the kernel)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def reexec_in_namespace(argv: Sequence[str]) -> None:
    """Replace this process with the bench in a fresh network + PID namespace (see the module docstring)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        print("skipped: unshare or ip is not installed; Ray may only run in a private network namespace")
        sys.exit(0)
    os.environ[NETNS_MARK] = "1"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    command = 'ip link set lo up && "$0" "$@"'  # no exec: sh, as PID 1, reaps orphans
    inner = [sys.executable, "-m", "bench.scale", *argv]
    os.execvp("unshare", ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", command, *inner])


# --- the cluster -----------------------------------------------------------------------------------------


def _ray(*args: str) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    ray_cli = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_cli, *args], check=True, env=env, capture_output=True, timeout=120)


def start_cluster() -> str:
    """A head and one more node, one CPU each, no dashboard (nothing here reads the state API)."""
    address = f"127.0.0.1:{RAY_PORT}"
    store = ("--object-store-memory", str(OBJECT_STORE_BYTES))
    _ray("start", "--head", "--port", str(RAY_PORT), "--include-dashboard", "false", *store, *NODE_ARGS)
    _ray("start", "--address", address, *store, *NODE_ARGS)
    return address


def wait_for_nodes(count: int, timeout_s: float = 60.0) -> None:
    """Block until ``count`` nodes are alive (the second ``ray start`` returns before its node registers)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while sum(node["Alive"] for node in ray.nodes()) < count:  # type: ignore[no-untyped-call]
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} Ray nodes are alive after {timeout_s:.0f} s")
        time.sleep(0.2)


_RAY_MARKERS = (
    b"raylet",
    b"gcs_server",
    b"ray::",
    b"default_worker.py",
    b"/ray/_private/",
    b"/ray/dashboard/",
)
"""Workers rename themselves (``ray::IDLE``); the daemons run from Ray's package or are its binaries."""


def ray_processes() -> list[int]:
    """Pids of Ray processes visible here (in the bench's PID namespace: only its own cluster's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if any(marker in cmdline for marker in _RAY_MARKERS):
            pids.append(int(proc.name))
    return pids


def stop_cluster() -> int:
    """Disconnect, ``ray stop``, and wait for every Ray process to go; returns how many it had to kill.

    Any process ``ray stop`` missed is killed by pid: in this PID namespace every one is this bench's.
    """
    import ray

    ray.shutdown()
    try:
        _ray("stop", "--grace-period", "2")  # SIGTERM, then SIGKILL: --force alone waits ~25 s here
    finally:
        deadline = time.monotonic() + 10
        while ray_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = ray_processes()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return len(left)


# --- inputs ----------------------------------------------------------------------------------------------


def shared_clip(name: str, seconds: float) -> tuple[Path, float]:
    """The shared clip ``name`` and its frame rate, checked against MANIFEST.csv (SDR, long enough)."""
    with (VIDEO_DATA / "MANIFEST.csv").open(newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    row = rows.get(name)
    if row is None:
        raise SystemExit(
            f"clip '{name}' is not in {VIDEO_DATA / 'MANIFEST.csv'}; expected one of {sorted(rows)}"
        )
    if row["transfer"] or float(row["duration_s"]) < seconds:
        raise SystemExit(f"clip '{name}' is not SDR or shorter than {seconds} s: {row}")
    num, _, den = row["fps"].partition("/")
    return VIDEO_DATA / name, float(num) / float(den or 1)


def ffmpeg(*args: str) -> None:
    """Run FFmpeg quietly; its own error is the message."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def make_sources(clip: Path, fps: float, seconds: float, tmp: Path) -> tuple[Path, Path]:
    """The 1080p clip (a keyframe every second, no scene cuts, audio copied) and its first 2 s for warm-up."""
    src, warm = tmp / "src_1080p.mp4", tmp / "warm_1080p.mp4"
    gop = str(round(fps))
    ffmpeg(
        *("-t", str(seconds), "-i", str(clip), "-vf", "scale=1920:1080:flags=bicubic"),
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"),
        *("-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-c:a", "copy", str(src)),
    )
    ffmpeg("-i", str(src), "-t", "2", "-c", "copy", str(warm))
    return src, warm


# --- the measurements ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutCost:
    """The driver's two passes over one input, each the best of a few runs."""

    plan: "SplitVideo"
    plan_s: float
    """``plan_video``: before the first task."""
    cut_s: float
    """``segment_inputs`` consumed to the end: every segment cut and remuxed, as the workers convert."""
    input_bytes: int
    """The segments' bytes, all of which go into the object store."""


def measure_cut(src: Path, segment_s: float, repeat: int = 3) -> CutCost:
    """The driver's plan and cut of ``src``, best of ``repeat`` each (demuxing only: noise is most of it)."""
    from service.pipeline import ConvertOptions
    from service.scaleout.split import plan_video, segment_inputs

    plan_s = cut_s = math.inf
    input_bytes = 0
    for _ in range(repeat):
        start = time.perf_counter()
        plan = plan_video(src, segment_s, ConvertOptions())
        plan_s = min(plan_s, time.perf_counter() - start)
        start = time.perf_counter()
        input_bytes = sum(len(s.data) for s in segment_inputs(src, plan, ConvertOptions()))
        cut_s = min(cut_s, time.perf_counter() - start)
    return CutCost(plan, plan_s, cut_s, input_bytes)


def run_in_process(src: Path, dst: Path, operator: str, threads: int) -> tuple["ConversionResult", float]:
    """``convert_video`` on ``threads`` threads after an untimed 4-frame warm-up (JIT cache, encoder)."""
    import numba

    from service.inference.types import OperatorSpec
    from service.pipeline import ConvertOptions, convert_video
    from service.video.decode import DecodeOptions
    from service.video.encode import EncodeOptions

    numba.set_num_threads(min(threads, int(getattr(numba.config, "NUMBA_NUM_THREADS", threads))))
    op = OperatorSpec.of(operator).create()
    options = ConvertOptions(encode=EncodeOptions(threads=threads), decode=DecodeOptions(threads=threads))
    convert_video(src, dst, op, replace(options, max_frames=4))
    start = time.perf_counter()
    result = convert_video(src, dst, op, options)
    return result, time.perf_counter() - start


@dataclass
class SegmentTimeline:
    """What ``on_segment`` reported, stamped with seconds since the conversion started."""

    started: float
    queued_at: dict[int, float]
    done_at: dict[int, float]
    seconds: dict[int, float]
    nodes: dict[int, str]

    def __call__(self, event: "SegmentEvent") -> None:
        now = time.perf_counter() - self.started
        if event.state == "queued":
            self.queued_at[event.index] = now
        elif event.state == "done":
            self.done_at[event.index] = now
            self.seconds[event.index] = event.seconds
            self.nodes[event.index] = event.node_id


def run_segmented(
    src: Path, dst: Path, operator: str, segment_s: float
) -> tuple["ConversionResult", float, SegmentTimeline]:
    """``convert_video_segmented`` on the connected cluster, one CPU per task; its events on a timeline."""
    from service.inference.types import OperatorSpec
    from service.scaleout.cluster import ScaleoutConfig, convert_video_segmented

    config = ScaleoutConfig(address=f"127.0.0.1:{RAY_PORT}", segment_seconds=segment_s, num_cpus=1.0)
    spec = OperatorSpec.of(operator)  # builds the operator once to check it: not part of the timed run
    timeline = SegmentTimeline(time.perf_counter(), {}, {}, {}, {})
    result = convert_video_segmented(src, dst, spec, config=config, on_segment=timeline)
    return result, time.perf_counter() - timeline.started, timeline


def measure_reassembly(
    src: Path, result: "ConversionResult", split: "SplitVideo", segment_s: float, tmp: Path
) -> dict[str, Any]:
    """Time the driver's reassembly of ``result``'s segments, held in memory as the workers' results are.

    ``result`` (the two-node result: every worker segment starts on an IDR) is cut again at
    ``segment_s``; the pieces are concatenated with the audio copied once from ``src``, then finalized, as
    :func:`service.scaleout.assemble.assemble` does, with the two steps timed apart.
    """
    from service.colour.tags import Transfer
    from service.pipeline import Encoded, finalize, temp_path
    from service.scaleout.assemble import combined_meter
    from service.scaleout.task import SegmentOutput
    from service.video.decode import DecodeOptions, VideoReader
    from service.video.remux import SegmentConcat, cut_segments

    # Stream copy only: the transfer override only gets the HDR10 file past the SDR-only probe.
    with VideoReader(result.path, DecodeOptions(transfer=Transfer.BT709)) as reader:
        pieces = tuple(cut_segments(reader, segment_s))
    light = (result.max_cll, result.max_fall)
    outputs = [SegmentOutput(p.index, p.data, p.frames, *light, (), 0.0) for p in pieces]
    dst = tmp / "reassembled.mp4"
    pass1 = temp_path(dst, "encode")
    start = time.perf_counter()
    concat = SegmentConcat(
        pass1, format="mp4", first_segment=outputs[0].data, source=src, copy_streams=split.copy_streams
    )
    for output, piece in zip(outputs, pieces, strict=True):
        concat.write(output.data, piece.end_s)
    concat.close()
    concat_s = time.perf_counter() - start
    meter = combined_meter(outputs)
    start = time.perf_counter()
    finalize(Encoded(pass1, meter.frames, meter), dst, "mp4", result.mastering)
    finalize_s = time.perf_counter() - start
    pass1.unlink(missing_ok=True)
    return {
        "segments": len(pieces),
        "frames": meter.frames,
        "output_bytes": sum(len(p.data) for p in pieces),
        "concat_s": concat_s,
        "finalize_s": finalize_s,
    }


# --- the run ---------------------------------------------------------------------------------------------


def _video_s(split: "SplitVideo") -> float:
    return float(split.segments[-1].end_s - split.segments[0].start_s)


def bench(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Every measurement of the module docstring, in order; returns the JSON cases."""
    import ray

    from service.memory import map_large_blocks

    map_large_blocks()  # as `itmstream convert` does first
    clip, fps = shared_clip(args.clip, args.seconds)
    src, warm = make_sources(clip, fps, args.seconds, tmp)
    cases: list[dict[str, Any]] = []

    cost = measure_cut(src, args.segment_seconds)
    split, input_bytes = cost.plan, cost.input_bytes
    split_s = cost.plan_s + cost.cut_s
    video_s = _video_s(split)
    frames = split.frames
    print(
        f"'demux {args.clip} 1080p': {len(split.segments)} segments, {video_s:.1f} s of video planned in "
        f"{cost.plan_s:.3f} s and cut in {cost.cut_s:.3f} s => {video_s / split_s:.0f} s of video/s; "
        f"{input_bytes / video_s * 8e-6:.2f} Mbit/s into the store"
    )
    cases.append(
        {
            "case": "demux (plan_video, segment_inputs)",
            "segments": len(split.segments),
            "segment_frames": [s.frames for s in split.segments],
            "video_s": video_s,
            "seconds": split_s,
            "plan_seconds": cost.plan_s,
            "cut_seconds": cost.cut_s,
            "video_s_per_s": video_s / split_s,
            "input_bytes": input_bytes,
        }
    )

    in_result, in_s = run_in_process(src, tmp / "in_process.mp4", args.operator, args.threads)
    name = f"in-process {args.operator} hevc 1080p, {args.threads} threads"
    print(line(name, in_result.frames, in_s))
    cases.append(
        {
            "case": name,
            "frames": in_result.frames,
            "seconds": in_s,
            "fps": in_result.frames / in_s,
            "stage_seconds": in_result.timings,
            "max_cll": in_result.max_cll,
            "max_fall": in_result.max_fall,
        }
    )

    started = time.perf_counter()
    try:
        address = start_cluster()
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
        wait_for_nodes(2)
        cluster_s = time.perf_counter() - started
        _, warm_s, warm_timeline = run_segmented(warm, tmp / "warm.mp4", args.operator, 1.0)
        warm_nodes = len(set(warm_timeline.nodes.values()))
        print(
            f"cluster up in {cluster_s:.1f} s; warm-up: 2 s of video in {warm_s:.1f} s "
            f"on {warm_nodes} node(s)"
        )
        ray_result, ray_s, timeline = run_segmented(
            src, tmp / "two_nodes.mp4", args.operator, args.segment_seconds
        )
    finally:
        left = stop_cluster()
    if left:
        print(f"warning: {left} Ray processes outlived ray stop and were killed")
    name = f"2 nodes x 1 CPU {args.operator} hevc 1080p, {len(timeline.seconds)} segments"
    print(line(name, ray_result.frames, ray_s))
    per_segment = [timeline.seconds[i] for i in sorted(timeline.seconds)]
    first_queued = min(timeline.queued_at.values())
    last_done = max(timeline.done_at.values())
    print(
        f"    per segment (worker s): {', '.join(f'{s:.1f}' for s in per_segment)}; mean "
        f"{sum(per_segment) / len(per_segment):.1f}; driver before the first task {first_queued:.2f} s, "
        f"after the last {ray_s - last_done:.2f} s; nodes used {len(set(timeline.nodes.values()))}"
    )
    cases.append(
        {
            "case": name,
            "frames": ray_result.frames,
            "seconds": ray_s,
            "fps": ray_result.frames / ray_s,
            "segment_seconds": per_segment,
            "segment_nodes": [timeline.nodes[i] for i in sorted(timeline.nodes)],
            "segment_done_at_s": [timeline.done_at[i] for i in sorted(timeline.done_at)],
            "driver_before_first_task_s": first_queued,
            "driver_after_last_segment_s": ray_s - last_done,
            "assemble_seconds_incl_waiting": ray_result.timings.get("finalize"),
            "max_cll": ray_result.max_cll,
            "max_fall": ray_result.max_fall,
            "cluster_start_s": cluster_s,
            "warm_up_s": warm_s,
            "warm_up_nodes": warm_nodes,
            "ray_processes_killed_after_stop": left,
        }
    )

    mux = measure_reassembly(src, ray_result, split, args.segment_seconds, tmp)
    mux_s = mux["concat_s"] + mux["finalize_s"]
    print(
        f"'mux (concat + finalize)': {video_s:.1f} s of video in {mux_s:.3f} s "
        f"(concat {mux['concat_s']:.3f}, finalize {mux['finalize_s']:.3f}) => "
        f"{video_s / mux_s:.0f} s of video/s; "
        f"{mux['output_bytes'] / video_s * 8e-6:.2f} Mbit/s out of the store"
    )
    cases.append(
        {"case": "mux (concat + finalize)", **mux, "video_s": video_s, "video_s_per_s": video_s / mux_s}
    )

    extra_s, ratio = overhead(in_s, ray_s)
    met = ratio <= TARGET_OVERHEAD
    print(
        f"overhead: {extra_s:+.2f} s = {100 * ratio:+.1f} % of in-process on the same cores "
        f"(target <= {100 * TARGET_OVERHEAD:.0f} %: {'met' if met else 'NOT met'}); "
        f"fps in-process {frames / in_s:.2f}, 2 nodes {frames / ray_s:.2f}"
    )
    cases.append(
        {
            "case": "overhead",
            "extra_s": extra_s,
            "ratio": ratio,
            "target": TARGET_OVERHEAD,
            "target_met": met,
            "worker_cpu_s": sum(per_segment),
            "in_process_cpu_s": args.threads * in_s,
        }
    )

    model = ScaleModel(
        segment_s=video_s / len(split.segments),
        segment_wall_s=sum(per_segment) / len(per_segment),
        split_s_per_video_s=cost.plan_s / video_s,
        concat_s_per_video_s=mux["concat_s"] / video_s,
        finalize_s_per_video_s=mux["finalize_s"] / video_s,
        store_bytes_per_video_s=(input_bytes + mux["output_bytes"]) / video_s,
        cut_s_per_video_s=cost.cut_s / video_s,
    )
    print(
        f"model: 2 nodes projected {projected_wall_s(model, video_s, 2):.1f} s (measured {ray_s:.1f} s); "
        f"driver (cut + concatenation) bound beyond {concat_bound_nodes(model):.0f} slots"
    )
    film = projection(model, FILM_S, PROJECTED_NODES)
    for row in film:
        print(
            f"    90-min film on {row['nodes']:>3} slots: {row['wall_s'] / 60:6.1f} min, "
            f"{row['video_s_per_s']:.2f} s of video/s, x{row['speedup']:.1f}, "
            f"store {row['store_mbit_per_s']:.0f} Mbit/s"
        )
    cases.append(
        {
            "case": "projection",
            "model": asdict(model),
            "measured_clip_2_nodes_projected_s": projected_wall_s(model, video_s, 2),
            "concat_bound_nodes": concat_bound_nodes(model),
            "film_s": FILM_S,
            "film": film,
        }
    )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operator", default="bt2408")
    parser.add_argument("--clip", default="big_buck_bunny.mp4", help="a clip from ../shared/data/video")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the 1080p clip")
    parser.add_argument("--segment-seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2, help="in-process threads: the two nodes' CPUs")
    args = parser.parse_args()
    if not only_loopback():
        if os.environ.get(NETNS_MARK):
            raise SystemExit(
                "re-executed under unshare, but interfaces other than loopback are still visible"
            )
        reexec_in_namespace(sys.argv[1:])
    try:
        import ray  # noqa: F401
    except ImportError:
        print("skipped: the 'ray' extra is not installed")
        return
    if not (VIDEO_DATA / "MANIFEST.csv").is_file() or shutil.which("ffmpeg") is None:
        print(f"skipped: needs {VIDEO_DATA} and ffmpeg")
        return
    os.environ.setdefault("SVT_LOG", "1")
    with tempfile.TemporaryDirectory() as tmp:
        cases = bench(args, Path(tmp))
    # One file per operator, so a run with mqn does not overwrite the bt2408 figures SCALING.md cites.
    subject = "scale" if args.operator == "bt2408" else f"scale_{args.operator}"
    print(f"results: {write(subject, cases, settings=vars(args))}")


if __name__ == "__main__":
    main()
