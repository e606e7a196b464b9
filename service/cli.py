"""``itmstream``: convert videos and images from the command line, list operators.

Every failure the user can cause ends as exactly one line on stderr (``itmstream: error: ...``) and a
non-zero exit status: 2 for usage errors (argparse's convention), 1 for an input or output that cannot be
converted, 130 on Ctrl-C. No partial output is ever left behind (the pipeline writes atomically).

Subcommands are listed in :data:`COMMANDS`; ``serve`` hands over to :mod:`service.server`.
"""

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Never

from service.colour.primaries import PRIMARIES_BT2020, PRIMARIES_DISPLAY_P3
from service.colour.scaling import DEFAULT_PEAK_NITS
from service.colour.tags import Matrix, Primaries, Range, Transfer
from service.errors import InputError, ItmError, OutputError
from service.memory import map_large_blocks
from service.operators import available_operators, create_operator
from service.operators.base import Operator, ParamSpec

if TYPE_CHECKING:
    from tqdm import tqdm

    from service.config import ScaleoutSettings
    from service.pipeline import ConversionResult, ConvertOptions, Progress

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".mts",
    ".m2ts",
    ".mpg",
    ".mpeg",
    ".flv",
    ".y4m",
)
"""What ``convert DIR --out-dir`` takes from a folder (a file named on the command line is always tried)."""
MASTERING_PRIMARIES = {"p3": PRIMARIES_DISPLAY_P3, "bt2020": PRIMARIES_BT2020}
_NOT_OVERRIDES = {"UNSPECIFIED", "LINEAR", "SMPTE2084", "ARIB_STD_B67", "RGB"}  # not SDR Y'CbCr video
INPUT_OVERRIDES: dict[str, list[Transfer] | list[Primaries] | list[Matrix] | list[Range]] = {
    "transfer": [m for m in Transfer if m.name not in _NOT_OVERRIDES],
    "primaries": [m for m in Primaries if m.name not in _NOT_OVERRIDES],
    "matrix": [m for m in Matrix if m.name not in _NOT_OVERRIDES],
    "range": [m for m in Range if m.name not in _NOT_OVERRIDES],
}

Command = tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]  # type: ignore[type-arg]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not key=value")
    return key.strip(), value.strip()


def _add_operator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator", "-o", default="bt2446a", help="ITM operator (see `itmstream operators`)"
    )
    parser.add_argument(
        "--peak", type=float, default=DEFAULT_PEAK_NITS, metavar="NITS", help="mastering peak in cd/m²"
    )
    parser.add_argument(
        "--op-param",
        type=_key_value,
        action="append",
        default=[],
        metavar="K=V",
        help="operator parameter, e.g. key_nits=180 (repeatable)",
    )


def _add_paths_args(parser: argparse.ArgumentParser) -> None:
    """``IN OUT``, or inputs and folders with ``--out-dir`` (``convert`` and ``image`` alike)."""
    parser.add_argument(
        "paths", nargs="+", type=Path, help="inputs (files or directories), then OUT without --out-dir"
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="convert every input into this folder")


def _coerce(spec: ParamSpec, value: str) -> float | str:
    if isinstance(spec.default, str):
        return value
    try:
        return float(value)
    except ValueError:
        raise InputError(f"operator parameter {spec.name}={value!r} is not a number") from None


def make_operator(args: argparse.Namespace) -> Operator:
    """Create the operator once from ``--operator``, ``--peak`` and ``--op-param``.

    Raises
    ------
    InputError
        Unknown operator, unknown parameter or a value out of range.
    """
    specs = {info.name: {p.name: p for p in info.params} for info in available_operators()}
    params: dict[str, float | str] = {"peak_nits": args.peak}
    for key, value in args.op_param:
        spec = specs.get(args.operator, {}).get(key)
        params[key] = _coerce(spec, value) if spec else value
    try:
        return create_operator(args.operator, **params)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _describe_operator(name: str, params: dict[str, float | str]) -> str:
    """``operator bt2446a (peak_nits=1000)``: the operator and every parameter it ran with."""
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return f"operator {name} ({shown})" if shown else f"operator {name}"


# --- convert --------------------------------------------------------------------------------------------


def _convert_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from service.video.encode import Container

    p = sub.add_parser(
        "convert",
        help="convert SDR videos to HDR10 (HEVC or AV1; .mp4, .mov, .mkv)",
        description="Either `convert IN OUT.{mp4,mov,mkv}`, or `convert IN... DIR... --out-dir D`.",
    )
    _add_paths_args(p)
    p.add_argument(
        "--container", choices=[c.value for c in Container], default="mp4", help="output with --out-dir"
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="convert in segments on the Ray cluster at ADDRESS ('auto': the Ray running on this machine, "
        "else one started for this run, on loopback, only inside a private network namespace; default "
        "ITM_RAY_ADDRESS, else in-process)",
    )
    _add_operator_args(p)
    p.add_argument("--codec", choices=("hevc", "av1"), default="hevc")
    p.add_argument("--crf", type=int, default=None, help="quality (default: hevc 20, av1 30)")
    p.add_argument("--preset", default=None, help="encoder preset (default: hevc veryfast, av1 10)")
    p.add_argument(
        "--param",
        type=_key_value,
        action="append",
        default=[],
        metavar="K=V",
        help="extra x265-params / svtav1-params entry (repeatable)",
    )
    p.add_argument(
        "--batch", type=int, default=1, help="frames per operator call (each 1080p frame holds ~55 MB)"
    )
    p.add_argument("--max-frames", type=int, default=None, help="convert only the first N frames")
    p.add_argument("--no-audio", action="store_true", help="drop audio instead of copying it")
    p.add_argument("--no-subtitles", action="store_true", help="drop subtitles instead of copying them")
    p.add_argument(
        "--mastering-primaries",
        choices=sorted(MASTERING_PRIMARIES),
        default="p3",
        help="ST 2086 mastering display primaries (default p3, D65)",
    )
    tags = p.add_argument_group("input colour overrides (default: tags, else BT.709 for HD, BT.601 for SD)")
    for name, members in INPUT_OVERRIDES.items():
        choices = [m.name.lower() for m in members]
        tags.add_argument(f"--input-{name}", choices=choices, default=None, metavar="|".join(choices))
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def convert_jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs of ``convert``: ``IN OUT``, or inputs and folders with ``--out-dir``.

    Raises
    ------
    InputError
        For no inputs, an ``--out-dir`` that is a file, or two inputs that would write the same output file.
    """
    if args.out_dir is None:
        return [(args.paths[0], args.paths[1])]
    return _output_pairs(args.paths, VIDEO_SUFFIXES, args.out_dir, f".{args.container}", "videos")


def _convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from service.config import ScaleoutSettings
    from service.pipeline import ConvertOptions, Progress
    from service.video.decode import DecodeOptions
    from service.video.encode import EncodeOptions
    from service.video.hdr10_metadata import MasteringDisplay

    if args.out_dir is None and len(args.paths) != 2:
        sys.stderr.write("itmstream: error: give `IN OUT`, or inputs with --out-dir DIR (see --help)\n")
        return EXIT_USAGE
    map_large_blocks()  # before the first frame buffer: the 1080p peak without heap fragments
    jobs = convert_jobs(args)
    operator = make_operator(args)
    decode = DecodeOptions(
        transfer=Transfer[args.input_transfer.upper()] if args.input_transfer else None,
        primaries=Primaries[args.input_primaries.upper()] if args.input_primaries else None,
        matrix=Matrix[args.input_matrix.upper()] if args.input_matrix else None,
        range=Range[args.input_range.upper()] if args.input_range else None,
    )
    options = ConvertOptions(
        encode=EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, params=dict(args.param)),
        decode=decode,
        mastering=MasteringDisplay(
            MASTERING_PRIMARIES[args.mastering_primaries], max_nits=operator.peak_nits
        ),
        batch_size=args.batch,
        max_frames=args.max_frames,
        copy_audio=not args.no_audio,
        copy_subtitles=not args.no_subtitles,
    )
    try:
        scaleout = ScaleoutSettings()
    except ValueError as exc:  # pydantic's ValidationError
        raise InputError(f"invalid ITM_* setting: {exc}") from exc
    address = args.ray or scaleout.ray_address
    convert = _converter(operator, options, address, scaleout)
    if args.out_dir is not None:
        _make_out_dir(args.out_dir, jobs)
    planned = _planned_frames(jobs, options) if args.out_dir is not None else {}
    bar = tqdm(
        total=sum(planned.values()) or None,  # a single file's total comes with its first progress
        unit="frame",
        desc=args.paths[0].name if args.out_dir is None else f"{len(jobs)} files",
        disable=args.quiet or None,  # None: only on a terminal
        file=sys.stderr,
        leave=False,
    )
    done_before = 0  # frames of the files already converted (one bar over the whole batch)

    def progress(p: Progress) -> None:
        if args.out_dir is None and p.frames_total and bar.total != p.frames_total:
            bar.total = p.frames_total
        bar.update(done_before + p.frames_done - bar.n)
        if p.stage == "finalize":
            bar.set_postfix_str("writing the HDR10 metadata")

    failed = 0
    ray_run = contextlib.ExitStack()
    if address is not None:  # leave Ray at the end: a Ray that --ray auto started here stops with the run
        from service.scaleout.cluster import session

        ray_run.enter_context(session())
    try:
        for src, dst in jobs:
            started = time.perf_counter()
            try:
                result = convert(src, dst, progress)
            except ItmError as exc:
                if args.out_dir is None:
                    raise
                failed += 1
                _settle(bar, planned, src, done_before, 0)
                bar.write(f"itmstream: error: {src}: {exc}", file=sys.stderr)
                continue
            done_before += result.frames
            if planned:
                _settle(bar, planned, src, done_before, result.frames)
            if not args.quiet:
                _report(bar, result, time.perf_counter() - started)
    finally:
        bar.close()
        ray_run.close()
    return EXIT_FAILED if failed else EXIT_OK


def _planned_frames(jobs: Sequence[tuple[Path, Path]], options: "ConvertOptions") -> dict[Path, int]:
    """Frames each input should give (declared, else duration x rate), from a probe of all before the first.

    What the overall progress bar of ``--out-dir`` counts to. An input that cannot be probed counts 0: it
    fails with its own message when its turn comes.
    """
    from service.video.decode import VideoReader

    planned: dict[Path, int] = {}
    for src, _ in jobs:
        try:
            with VideoReader(src, options.decode) as reader:
                frames = reader.info.frames
        except ItmError:
            frames = 0
        planned[src] = min(frames, options.max_frames) if options.max_frames else frames
    return planned


def _settle(bar: "tqdm[Never]", planned: dict[Path, int], src: Path, done_before: int, frames: int) -> None:
    """Once ``src`` is done (``frames`` converted, 0 if it failed): its planned count becomes the real one."""
    bar.total = (bar.total or 0) + frames - planned.pop(src, 0)
    bar.update(done_before - bar.n)  # a failed file's partial frames do not count
    bar.refresh()


def _converter(
    operator: Operator, options: "ConvertOptions", address: str | None, settings: "ScaleoutSettings"
) -> "Callable[[Path, Path, Callable[[Progress], None]], ConversionResult]":
    """Convert one file: in-process, or in segments on Ray when an address is given."""
    if address is None:
        from service.pipeline import convert_video

        return lambda src, dst, progress: convert_video(src, dst, operator, options, progress=progress)
    from service.inference.types import OperatorSpec
    from service.scaleout.cluster import ScaleoutConfig, convert_video_segmented

    spec = OperatorSpec.of(operator.name, **operator.params)
    config = ScaleoutConfig.from_settings(settings, address)
    return lambda src, dst, progress: convert_video_segmented(
        src, dst, spec, options, config=config, progress=progress
    )


def _report(bar: "tqdm[Never]", result: "ConversionResult", elapsed: float) -> None:
    """The summary of one converted file, and its warnings, above the progress bar."""
    bar.write(
        f"{result.path}: {result.frames} frames {result.width}x{result.height} {result.codec}/"
        f"{result.container}, {_describe_operator(result.operator, result.operator_params)}, "
        f"MaxCLL {result.max_cll} MaxFALL {result.max_fall} cd/m²\n"
        f"done in {elapsed:.1f} s ({result.frames / max(elapsed, 1e-9):.1f} fps)",
        file=sys.stderr,
    )
    for warning in result.warnings:
        bar.write(f"itmstream: warning: {warning}", file=sys.stderr)


# --- image ----------------------------------------------------------------------------------------------


def _image_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "image",
        help="convert SDR PNG/JPEG stills to HDR (OpenEXR or 16-bit PQ PNG)",
        description="Either `image IN OUT.{exr,png}`, or `image IN... DIR... --out-dir D --format exr|png`.",
    )
    _add_paths_args(p)
    p.add_argument("--format", choices=("exr", "png"), default="exr")
    _add_operator_args(p)
    p.add_argument("--quiet", "-q", action="store_true")


def _expand_inputs(paths: Sequence[Path], suffixes: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes))
        else:
            files.append(path)
    return files


def _output_pairs(
    paths: Sequence[Path], suffixes: Sequence[str], out_dir: Path, out_suffix: str, kind: str
) -> list[tuple[Path, Path]]:
    """(input, ``out_dir/<stem><out_suffix>``) for the inputs and folders in ``paths``.

    Raises
    ------
    InputError
        For an ``out_dir`` that is a file, no inputs, or two inputs that would write the same output file.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir '{out_dir}' exists and is not a directory")
    inputs = _expand_inputs(paths, suffixes)
    if not inputs:
        raise InputError(f"no input {kind} ({', '.join(suffixes)}) found")
    jobs = [(src, out_dir / f"{src.stem}{out_suffix}") for src in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in jobs:
        if dst in seen:
            raise InputError(f"'{seen[dst]}' and '{src}' would both be written to '{dst}'")
        seen[dst] = src
    return jobs


def _make_out_dir(out_dir: Path, jobs: Sequence[tuple[Path, Path]]) -> None:
    """Create ``--out-dir`` once some input exists (no empty folder for nothing).

    Raises
    ------
    OutputError
        If it cannot be created.
    """
    if any(src.is_file() for src, _ in jobs):
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create --out-dir '{out_dir}': {exc.strerror or exc}") from exc


def image_jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs from the positional arguments and ``--out-dir``/``--format``.

    ``--out-dir`` need not exist yet (:func:`_image` creates it once the inputs are known to be usable).

    Raises
    ------
    InputError
        For a missing output, no inputs, an ``--out-dir`` that is a file, or two inputs that would write the
        same output file.
    """
    if args.out_dir is None:
        if len(args.paths) != 2 or args.paths[0].is_dir():
            raise InputError("give `IN OUT.exr|OUT.png`, or inputs with --out-dir DIR")
        return [(args.paths[0], args.paths[1])]
    return _output_pairs(args.paths, IMAGE_SUFFIXES, args.out_dir, f".{args.format}", "images")


def _image(args: argparse.Namespace) -> int:
    from service.pipeline import convert_image, image_format

    jobs = image_jobs(args)
    for _, dst in jobs:
        image_format(dst)  # fail on a bad suffix before any work
    operator = make_operator(args)  # once, for every image
    if args.out_dir is not None:
        _make_out_dir(args.out_dir, jobs)
    failed = 0
    for src, dst in jobs:
        try:
            result = convert_image(src, dst, operator)
        except ItmError as exc:
            if len(jobs) == 1:
                raise
            failed += 1
            sys.stderr.write(f"itmstream: error: {src}: {exc}\n")
            continue
        if not args.quiet:
            sys.stderr.write(
                f"{result.path}: {result.width}x{result.height} {result.format}, "
                f"max {result.max_nits:.1f} cd/m², average {result.average_nits:.1f} cd/m²\n"
            )
        for warning in result.warnings:
            sys.stderr.write(f"itmstream: warning: {warning}\n")
    return EXIT_FAILED if failed else EXIT_OK


# --- operators ------------------------------------------------------------------------------------------


def _operators_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("operators", help="list the ITM operators and their parameters")


def _operators(args: argparse.Namespace) -> int:
    lines = []
    for info in available_operators():
        lines.append(f"{info.name}: {info.summary}")
        for spec in info.params:
            bounds = ""
            if spec.choices:
                bounds = f", one of {', '.join(spec.choices)}"
            elif spec.minimum is not None or spec.maximum is not None:
                bounds = f", {spec.minimum:g}..{spec.maximum:g}" if spec.maximum is not None else ""
            lines.append(f"    {spec.name} (default {spec.default}{bounds}): {spec.help}")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


# --- serve ----------------------------------------------------------------------------------------------


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the REST and WebSocket service (settings from ITM_* variables)")
    p.add_argument("--host", default=None, help="override ITM_HOST")
    p.add_argument("--port", type=int, default=None, help="override ITM_PORT")


def _serve(args: argparse.Namespace) -> int:
    from service.server import serve  # the server stack is imported only when serving

    serve(args.host, args.port)
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "convert": (_convert_parser, _convert),
    "image": (_image_parser, _image),
    "operators": (_operators_parser, _operators),
    "serve": (_serve_parser, _serve),
}
"""name -> (add its subparser, run it); ``serve`` only wires :func:`service.server.serve`."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, not the whole usage block: the CLI contract for every failure."""
        self.exit(EXIT_USAGE, f"itmstream: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every registered subcommand."""
    parser = _Parser(prog="itmstream", description="Inverse tone mapping: SDR video and images to HDR10.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itmstream`` script; returns the exit status."""
    # SVT-AV1 prints its configuration banner to stderr unless told to log errors only.
    os.environ.setdefault("SVT_LOG", "1")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except ItmError as exc:
        sys.stderr.write(f"itmstream: error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("itmstream: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
