"""``itmstream-client``: convert a video through a running service, stream a video's frames, list jobs.

Failures end as one line on stderr (``itmstream-client: error: ...``) and exit status 1 (2 for usage, 130 on
Ctrl-C), matching the server-side ``itmstream`` CLI.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from clients.errors import ClientError
from clients.http import Client
from clients.models import Job, JobOptions
from clients.protocol import StreamDrop, StreamOptions
from clients.stream import Stream
from clients.video import VideoFrames

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _options(args: argparse.Namespace) -> JobOptions:
    return JobOptions(
        operator=args.operator,
        mode=args.op_mode,
        peak_nits=args.peak,
        codec=getattr(args, "codec", None),
        crf=getattr(args, "crf", None),
        preset=getattr(args, "preset", None),
        container=getattr(args, "container", None),
    )


def _convert(args: argparse.Namespace) -> int:
    """Upload, wait and download with three progress bars (bytes up, frames, bytes down)."""
    src, dest = Path(args.input), Path(args.output)
    quiet = args.no_progress
    started = time.perf_counter()
    with Client(args.url, api_key=args.api_key) as api:
        with tqdm(total=src.stat().st_size, unit="B", unit_scale=True, desc="upload", disable=quiet) as bar:

            def on_upload(done: int, _total: int | None) -> None:
                bar.update(done - bar.n)

            job = api.submit(src, _options(args), on_upload=on_upload)
        with tqdm(unit="frame", desc="convert", disable=quiet) as bar:

            def progress(job: Job) -> None:
                if job.progress.frames_total and bar.total != job.progress.frames_total:
                    bar.total = job.progress.frames_total
                bar.set_postfix_str(job.state.value, refresh=False)
                bar.update(job.progress.frames_done - bar.n)

            job = api.wait(job.id, on_progress=progress, poll_s=args.poll, timeout=args.timeout)
        with tqdm(unit="B", unit_scale=True, desc="download", disable=quiet) as bar:

            def down(done: int, total: int | None) -> None:
                bar.total = total
                bar.update(done - bar.n)

            api.download(job.id, dest, on_progress=down)
    elapsed = time.perf_counter() - started
    frames = job.progress.frames_done
    _out(f"{dest}: job {job.id}, {frames} frames, {describe_options(job.options)}")
    _out(f"done in {elapsed:.1f} s ({frames / max(elapsed, 1e-9):.1f} fps, upload to download)")
    return EXIT_OK


def describe_options(options: dict[str, Any]) -> str:
    """What a job ran with, as the server resolved it: ``operator mqn (fast), peak 1000 cd/m², ...``.

    Options a server left unresolved (older servers report ``null``) are shown as ``default``.
    """

    def shown(key: str) -> str:
        value = options.get(key)
        return "default" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    mode = f" ({options['mode']})" if options.get("mode") else ""
    return (
        f"operator {shown('operator')}{mode}, peak {shown('peak_nits')} cd/m², {shown('codec')} "
        f"crf {shown('crf')} preset {shown('preset')}, {shown('container')}"
    )


def _stream(args: argparse.Namespace) -> int:
    """Stream a video's frames and print fps, latency and drops once a second, then a summary."""
    frames = VideoFrames.open(args.input, args.max_frames)
    width, height = frames.width, frames.height
    fps = frames.fps if args.fps is None else (args.fps or None)
    if args.mode == "lossless" and args.fps is None:
        fps = None
    options = StreamOptions(
        width,
        height,
        input="rgb24",
        output=args.output_format,
        mode=args.mode,
        operator=args.operator,
        operator_mode=args.op_mode,
        peak_nits=args.peak,
        colour="bt709",
        credits=args.credits,
    )
    latencies: list[float] = []
    window: list[float] = []
    results = drops = 0
    started = tick = time.perf_counter()
    with Stream.connect(args.url, options, api_key=args.api_key) as stream:
        _out(
            f"stream {stream.ready.session}: {width}x{height} {args.mode}, operator {stream.ready.operator}, "
            f"credits {stream.ready.credits}, pacing {f'{fps:.2f} fps' if fps else 'none'}"
        )
        last = 0
        for event in stream.run(frames, fps=fps):
            if isinstance(event, StreamDrop):
                drops += 1
            else:
                results += 1
                latencies.append(event.latency_s)
                window.append(event.latency_s)
            now = time.perf_counter()
            if now - tick >= 1.0:
                _out(_line(now - started, (results - last) / (now - tick), window, drops))
                tick, last, window = now, results, []
    elapsed = time.perf_counter() - started
    _out("total: " + _line(elapsed, results / elapsed if elapsed else 0.0, latencies, drops))
    return EXIT_OK


def _line(t: float, fps: float, latencies: list[float], drops: int) -> str:
    if latencies:
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        lat = f"latency p50 {1000 * statistics.median(ordered):.1f} ms p99 {1000 * p99:.1f} ms"
    else:
        lat = "latency -"
    return f"t={t:6.1f}s fps {fps:6.1f} {lat} drops {drops}"


def _jobs(args: argparse.Namespace) -> int:
    """One line per job: id, state, progress, operator, file name."""
    with Client(args.url, api_key=args.api_key) as api:
        jobs = list(api.iter_jobs()) if args.all else api.list(args.limit).items
    _out(f"{'ID':<34} {'STATE':<10} {'FRAMES':>13} {'CREATED (UTC)':<20} {'OPERATOR':<16} FILE")
    for job in jobs:
        p = job.progress
        frames = f"{p.frames_done}/{p.frames_total or '?'}"
        created = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
        operator = str(job.options.get("operator") or "default")
        if job.options.get("mode"):
            operator += f" ({job.options['mode']})"
        _out(f"{job.id:<34} {job.state.value:<10} {frames:>13} {created:<20} {operator:<16} {job.filename}")
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    with Client(args.url, api_key=args.api_key) as api:
        api.cancel(args.job_id)
    _out(f"cancelled {args.job_id}")
    return EXIT_OK


def _operator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operator", "-o", help="operator name (server default if omitted)")
    parser.add_argument("--op-mode", choices=["fast", "quality"], help="mode for operators that take one")
    parser.add_argument("--peak", type=float, metavar="NITS", help="mastering peak in cd/m²")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and shell completion)."""
    parser = argparse.ArgumentParser(
        prog="itmstream-client", description="Convert, stream and list jobs on an itmstream service."
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("ITM_API_KEY"), help="bearer token (default: $ITM_API_KEY)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="convert an SDR video file to HDR10 through the service")
    convert.add_argument("url", help="service base URL, e.g. http://127.0.0.1:8000")
    convert.add_argument("input", help="SDR video file")
    convert.add_argument("output", help="where to write the HDR10 result")
    _operator_args(convert)
    convert.add_argument("--codec", choices=["hevc", "av1"])
    convert.add_argument("--crf", type=int)
    convert.add_argument("--preset")
    convert.add_argument("--container", choices=["mp4", "mkv", "mov"])
    convert.add_argument("--poll", type=float, default=0.5, help="seconds between status polls")
    convert.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    convert.add_argument("--no-progress", action="store_true", help="no progress bars")
    convert.set_defaults(func=_convert)

    stream = sub.add_parser("stream", help="stream a video's frames over the WebSocket; print fps/latency")
    stream.add_argument("url")
    stream.add_argument("input", help="video file (decoded locally with PyAV)")
    _operator_args(stream)
    stream.add_argument("--mode", choices=["live", "lossless"], default="live")
    stream.add_argument("--credits", type=int, default=2, help="credits granted in the hello")
    stream.add_argument(
        "--fps",
        type=float,
        help="send rate (default: the file's rate in live mode, unpaced in lossless; 0 = unpaced)",
    )
    stream.add_argument("--max-frames", type=int, help="stop after this many frames")
    stream.add_argument("--output-format", choices=["rgb10a2", "rgb48"], default="rgb10a2")
    stream.set_defaults(func=_stream)

    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("url")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--all", action="store_true", help="follow every page")
    jobs.set_defaults(func=_jobs)

    cancel = sub.add_parser("cancel", help="cancel (or delete) a job")
    cancel.add_argument("url")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=_cancel)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        sys.stderr.write("itmstream-client: interrupted\n")
        return EXIT_INTERRUPTED
    except (ClientError, httpx.HTTPError, OSError) as exc:
        sys.stderr.write(f"itmstream-client: error: {exc}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
