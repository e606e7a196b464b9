"""The learned operators side by side (issue 11, "our Table 3"): ``python -m bench.models``.

One row per operator and mode: every learned operator the service knows (``service.app.LEARNED_MODELS``)
whose exported model is present, and ``bt2408`` / ``bt2446a`` as anchors. An absent model is skipped with
its reason printed. Per row:

* **params**: as the model's export metadata records them (``<model>.json``); else counted from the
  ``.tflite`` files (constant weights and biases of every convolution / dense op).
* **GMACs at 1920x1080**: multiply-accumulates of every convolution, depthwise, transposed convolution and
  dense op in the LiteRT graphs the operator actually invokes for one 1080p frame, at the shapes it invokes
  them with (a low-resolution mode runs its network on a downscaled view; a native one on every pixel).
  The graphs are re-opened without the XNNPACK delegate for the count, so every tensor carries its shape.
* **latency**: the whole operator (``operator(frame, colour)``: preprocessing, network, colour maths) per
  1080p frame on this machine's cores, batch 1: ``--warmup`` untimed frames, then the median and p90 of
  ``--frames`` timed frames of a real shared clip scaled to 1920x1080 (``bench/_server.py``'s clip).
* **peak RSS**: VmHWM of a fresh child process that imports the operator registry, creates only that
  operator and converts those frames (it reads one frame at a time, so the clip adds one frame buffer).
  Latency is timed in that same child, so no other model shares its caches.
* **quality**: read from the evaluation tables, not re-run (``python -m models.evaluate [--model NAME]``
  writes ``models/results/eval.json`` / ``eval_<model>.json``): absolute and shape views, highlight
  PU21-PSNR and the mid-tone ratio. Each row says which file and which table row it came from; the served
  (quantized) row of a model is preferred to its float twin.
* **artifacts**: reversal %, darkened %, hue and p99.9 of ``../shared/tools/itm_artifacts.py``, through the
  project's own implementation (:mod:`models.mqn.visual_checks`, which follows the tool's definitions), on
  the tool's default frames, averaged like the tool's MEAN row (NaN-aware).
* **flicker**: :func:`bench.flicker.deltas` on the shared clips, as ratios to ``bt2408`` (mean over clips).

Prints the table (Markdown, ready for ``models/MODEL_CARD.md``) and writes ``bench/results/models.json`` and
``models.md``. The latencies are only meaningful on an otherwise idle machine: the load average is recorded.

    .venv/bin/python -m bench.models [--operators bt2408 mqn:fast ...] [--frames 30] [--skip-flicker ...]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import environment, line, write, write_markdown

ROOT = Path(__file__).resolve().parents[1]
MODEL_RESULTS = ROOT / "models" / "results"
ANCHORS = ("bt2408", "bt2446a")
PEAK_NITS = 1000.0
HEIGHT, WIDTH = 1080, 1920
CHILD_MARK = "BENCH-MODELS-RESULT "
"""Prefix of the one stdout line on which a child process returns its measurements (JSON)."""
QUALITY_KEYS = (
    "abs_pu21_psnr",
    "abs_pq_ssim",
    "abs_de_itp",
    "shape_pu21_psnr",
    "shape_pq_ssim",
    "shape_de_itp",
    "midtone_ratio",
    "highlight_pu21_psnr",
)
ARTIFACT_KEYS = ("reversal_pct", "darkened_pct", "hue_deg", "saturation", "shadow_stops", "p999_nits")
MAC_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D", "FULLY_CONNECTED", "BATCH_MATMUL"}
)


# --- what to measure ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One row: an operator, its mode (``None`` when it has none) and, if learned, its export metadata."""

    name: str
    mode: str | None = None
    learned: bool = False
    meta: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    version: str | None = None

    @property
    def label(self) -> str:
        """``mqn fast``, ``expandnet``, ``bt2408``."""
        return f"{self.name} {self.mode}" if self.mode else self.name

    @property
    def params(self) -> dict[str, float | str]:
        """Keyword arguments of :func:`service.operators.create_operator`."""
        out: dict[str, float | str] = {"peak_nits": PEAK_NITS}
        if self.mode:
            out["mode"] = self.mode
        return out

    def create(self) -> Any:
        """A fresh operator instance."""
        from service.operators import create_operator

        return create_operator(self.name, **self.params)


def discover(requested: Sequence[str] | None = None) -> tuple[list[Target], dict[str, str]]:
    """Rows to measure, and the operators skipped with their reason.

    ``requested`` holds ``NAME`` or ``NAME:MODE``; by default the anchors and every learned operator of
    ``service.app.LEARNED_MODELS``, each in every mode it offers. A learned operator whose model cannot be
    read is skipped, not failed.

    Raises
    ------
    ValueError
        For an operator or mode that does not exist.
    """
    from service.app import LEARNED_MODELS, model_version
    from service.operators import available_operators

    infos = {info.name: info for info in available_operators()}
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    for spec in requested or [*ANCHORS, *LEARNED_MODELS]:
        name, _, mode = spec.partition(":")
        if name not in infos:
            if name in LEARNED_MODELS:
                skipped[spec] = "its operator module does not import here"
                continue
            raise ValueError(f"operator '{name}' is not known; expected one of {sorted(infos)}")
        meta: dict[str, Any] | None = None
        version = None
        if name in LEARNED_MODELS:
            try:
                meta = LEARNED_MODELS[name].meta()
                version = model_version(name)
            except (OSError, RuntimeError, ValueError, KeyError) as exc:  # EngineError is a RuntimeError
                skipped[spec] = f"model not present ({exc})"
                continue
        modes = next((p.choices for p in infos[name].params if p.name == "mode" and p.choices), ())
        if mode and mode not in modes:
            raise ValueError(f"operator '{name}' has no mode '{mode}'; its modes are {list(modes)}")
        for m in [mode] if mode else list(modes) or [None]:
            targets.append(Target(name, m, name in LEARNED_MODELS, meta, version))
    return targets, skipped


def new_row(target: Target) -> dict[str, Any]:
    """The row of a target before anything is measured: identity, and what the export metadata records."""
    meta = target.meta or {}
    params = meta.get("params")
    return {
        "operator": target.name,
        "mode": target.mode,
        "label": target.label,
        "kind": "learned" if target.learned else "anchor",
        "model_version": target.version,
        "params": int(params) if params is not None else (None if target.learned else 0),
        "params_source": "export metadata" if params is not None else None,
        "gmacs_1080p_meta": meta.get("gmacs_1080p"),
        "tflite_params": None,
        "gmacs_1080p": None,
        "graphs": [],
        "latency_ms": None,
        "peak_rss_mb": None,
        "base_rss_mb": None,
        "quality": None,
        "artifacts": None,
        "flicker": None,
    }


# --- network cost: MACs and weights of the LiteRT graphs ------------------------------------------------


def _prod(shape: Iterable[int]) -> int:
    return math.prod(int(x) for x in shape)


def op_macs(op: str, inputs: Sequence[Sequence[int]], output: Sequence[int]) -> int:
    """Multiply-accumulates of one LiteRT op from its input and output shapes (0 for ops that are not MACs).

    Weight layouts are LiteRT's: CONV_2D (Cout, kh, kw, Cin), DEPTHWISE_CONV_2D (1, kh, kw, C),
    TRANSPOSE_CONV inputs (output_shape, weights (Cout, kh, kw, Cin), x), CONV_3D (kd, kh, kw, Cin, Cout),
    FULLY_CONNECTED (units, in). BATCH_MATMUL is counted without transposed operands.

    >>> op_macs("CONV_2D", [(1, 8, 8, 3), (16, 3, 3, 3), (16,)], (1, 8, 8, 16))
    27648
    >>> op_macs("ADD", [(1, 8), (1, 8)], (1, 8))
    0
    """
    if op == "CONV_2D":
        _, kh, kw, cin = inputs[1]
        return _prod(output) * kh * kw * cin
    if op == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = inputs[1]
        return _prod(output) * kh * kw
    if op == "TRANSPOSE_CONV":
        cout, kh, kw, _ = inputs[1]
        return _prod(inputs[2]) * kh * kw * cout
    if op == "CONV_3D":
        kd, kh, kw, cin, _ = inputs[1]
        return _prod(output) * kd * kh * kw * cin
    if op == "FULLY_CONNECTED":
        return _prod(output) * int(inputs[1][-1])
    if op == "BATCH_MATMUL":
        return _prod(output) * int(inputs[0][-1])
    return 0


def graph_cost(path: str, input_shapes: Sequence[tuple[int, Sequence[int], str]]) -> tuple[int, int]:
    """(MACs of one invoke, constant weights of its MAC ops) of a ``.tflite`` graph at the given inputs.

    ``input_shapes`` are (tensor index, shape, dtype) of its inputs. The graph is opened without the XNNPACK
    delegate and invoked once on zeros, so that every intermediate tensor has its shape (a delegated
    subgraph keeps the shapes it was prepared with).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=path,
        num_threads=os.cpu_count() or 1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    for index, shape, _ in input_shapes:
        interp.resize_tensor_input(index, list(shape), strict=False)
    interp.allocate_tensors()
    for index, shape, dtype in input_shapes:
        interp.set_tensor(index, np.zeros(shape, np.dtype(dtype)))
    interp.invoke()
    shapes = {t["index"]: tuple(int(x) for x in t["shape"]) for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the public API has no op list
    produced = {int(o): op for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}

    def constant(index: int) -> int | None:
        """The constant tensor behind an op input, looking through a DEQUANTIZE (float16 weights)."""
        op = produced.get(index)
        if op is None:
            return None if index in graph_inputs else index
        if op["op_name"] == "DEQUANTIZE":
            return constant(int(op["inputs"][0]))
        return None

    macs = 0
    weights: set[int] = set()
    for op in ops:
        if op["op_name"] not in MAC_OPS:
            continue
        ins = [int(i) for i in op["inputs"]]
        macs += op_macs(op["op_name"], [shapes.get(i, ()) for i in ins], shapes[int(op["outputs"][0])])
        weights |= {c for i in ins if i >= 0 and (c := constant(i)) is not None}
    return macs, sum(_prod(shapes[i]) for i in weights)


class InvokeRecorder:
    """Which LiteRT graphs an operator invokes, with which input shapes, how often (child process only).

    :meth:`install` replaces ``ai_edge_litert.interpreter.Interpreter`` by a subclass that notes its model
    path and, while :attr:`on`, each invoke's input shapes. The service imports ``Interpreter`` from that
    module when it builds one, so operators use the subclass without knowing; install it before creating
    the operator. Off, the only cost is one Python call per invoke.
    """

    def __init__(self) -> None:
        self.on = False
        self.calls: Counter[tuple[str, tuple[tuple[int, tuple[int, ...], str], ...]]] = Counter()

    def install(self) -> None:
        """Patch the interpreter class (once per process)."""
        import ai_edge_litert.interpreter as litert

        recorder = self
        base = litert.Interpreter

        class RecordingInterpreter(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.bench_model_path = kwargs.get("model_path") or (args[0] if args else None)

            def invoke(self, *args: Any, **kwargs: Any) -> Any:
                if recorder.on and self.bench_model_path:
                    inputs = tuple(
                        (int(d["index"]), tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).str)
                        for d in self.get_input_details()
                    )
                    recorder.calls[(str(self.bench_model_path), inputs)] += 1
                return super().invoke(*args, **kwargs)

        litert.Interpreter = RecordingInterpreter

    def cost(self, frames: int) -> tuple[list[dict[str, Any]], float | None, int | None]:
        """Per graph and shape: MACs and invokes per frame; total GMACs per frame; total weights.

        ``None`` for both totals when no graph ran (a classical operator).
        """
        graphs = []
        total_macs = 0
        weights: dict[str, int] = {}
        for (path, inputs), calls in sorted(self.calls.items()):
            macs, n_weights = graph_cost(path, inputs)
            weights[path] = n_weights
            total_macs += macs * calls
            graphs.append(
                {
                    "model": Path(path).name,
                    "inputs": [list(shape) for _, shape, _ in inputs],
                    "gmacs_per_invoke": macs / 1e9,
                    "invokes_per_frame": calls / frames,
                    "weights": n_weights,
                }
            )
        if not graphs:
            return [], None, None
        return graphs, total_macs / frames / 1e9, sum(weights.values())


# --- the child process: one operator, latency, peak RSS, network cost -----------------------------------


@dataclass(frozen=True)
class FrameFile:
    """1080p frames for the child processes: raw rgb24, ``count`` frames of ``height`` x ``width``."""

    path: Path
    count: int
    height: int = HEIGHT
    width: int = WIDTH


def write_frames(frames: Sequence[bytes | np.ndarray], path: Path, height: int, width: int) -> FrameFile:
    """Store frames (rgb24 payloads or H x W x 3 uint8 arrays) for :func:`measure_process`."""
    with path.open("wb") as f:
        for frame in frames:
            data = frame.tobytes() if isinstance(frame, np.ndarray) else frame
            if len(data) != height * width * 3:
                raise ValueError(f"frame of {len(data)} bytes is not {width}x{height} rgb24")
            f.write(data)
    return FrameFile(path, len(frames), height, width)


def _status_mb(field_name: str) -> float:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MiB."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(f"{field_name}:"):
            return int(row.split()[1]) / 1024
    return float("nan")


def child(job: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: create one operator, convert frames one at a time, report what it cost."""
    recorder = InvokeRecorder()
    if job["learned"]:  # an anchor's process should not even load LiteRT
        recorder.install()
    from service.colour.description import ColourDescription

    target = Target(job["operator"], job.get("mode"), job["learned"])
    frames = FrameFile(Path(job["frames"]), job["count"], job["height"], job["width"])
    colour = ColourDescription.video()
    buf = np.empty((1, frames.height, frames.width, 3), np.uint8)
    base_rss = _status_mb("VmRSS")
    op = target.create()
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    with frames.path.open("rb") as f:

        def load(i: int) -> np.ndarray:
            f.seek((i % frames.count) * buf.nbytes)
            f.readinto(buf)  # type: ignore[arg-type]
            return buf

        for i in range(job["warmup"]):
            op(load(i), colour)
        for i in range(job["warmup"], job["warmup"] + job["timed"]):
            frame = load(i)
            t0 = time.perf_counter()
            op(frame, colour)
            latencies.append((time.perf_counter() - t0) * 1e3)
            for stage, seconds in op.clock.seconds.items():
                stages.setdefault(stage, []).append(seconds * 1e3)
        peak_rss = _status_mb("VmHWM")
        # One more frame with the recorder on: which graphs a frame runs, at which shapes.
        recorder.on = True
        op(load(0), colour)
        recorder.on = False
    graphs, gmacs, weights = recorder.cost(frames=1)
    import numba

    return {
        "latency_ms": latencies,
        "stages_ms": stages,
        "peak_rss_mb": peak_rss,
        "base_rss_mb": base_rss,
        "graphs": graphs,
        "gmacs_1080p": gmacs,
        "tflite_params": weights,
        "numba_threads": numba.get_num_threads(),
    }


def measure_process(
    target: Target, frames: FrameFile, warmup: int, timed: int, timeout: float = 3600.0
) -> dict[str, Any]:
    """Latency, peak RSS and network cost of one operator, measured in a fresh child process.

    Raises
    ------
    RuntimeError
        If the child fails (its stderr tail is in the message).
    """
    job = {
        "operator": target.name,
        "mode": target.mode,
        "learned": target.learned,
        "frames": str(frames.path),
        "count": frames.count,
        "height": frames.height,
        "width": frames.width,
        "warmup": max(1, warmup),
        "timed": timed,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.models", "--child", json.dumps(job)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for row in reversed(proc.stdout.splitlines()):
        if row.startswith(CHILD_MARK):
            result: dict[str, Any] = json.loads(row.removeprefix(CHILD_MARK))
            return result
    raise RuntimeError(f"{target.label}: child exited with {proc.returncode}: {proc.stderr[-3000:]}")


def summarise_latency(ms: Sequence[float], stages: dict[str, list[float]], warmup: int) -> dict[str, Any]:
    """Median, p90, mean and min of the timed frames, and the median of each stage the operator reports."""
    if not ms:
        return {"frames": 0, "warmup": warmup}
    return {
        "median": statistics.median(ms),
        "p90": float(np.percentile(ms, 90)),
        "mean": statistics.fmean(ms),
        "min": min(ms),
        "frames": len(ms),
        "warmup": warmup,
        "stages_median": {stage: statistics.median(v) for stage, v in stages.items()},
    }


def fill_process(row: dict[str, Any], measured: dict[str, Any], warmup: int) -> None:
    """Put a child's measurements into a row."""
    row["latency_ms"] = summarise_latency(measured["latency_ms"], measured["stages_ms"], warmup)
    row["peak_rss_mb"] = measured["peak_rss_mb"]
    row["base_rss_mb"] = measured["base_rss_mb"]
    row["graphs"] = measured["graphs"]
    row["gmacs_1080p"] = measured["gmacs_1080p"]
    row["tflite_params"] = measured["tflite_params"]
    row["numba_threads"] = measured["numba_threads"]
    if row["params"] is None and measured["tflite_params"] is not None:
        row["params"] = measured["tflite_params"]
        row["params_source"] = "tflite weights"


# --- quality: the evaluation tables -------------------------------------------------------------------


def eval_files(name: str, results: Path = MODEL_RESULTS) -> list[Path]:
    """Where an operator's quality row may be: its own table first, then MQN's main one, then the rest."""
    first = [results / f"eval_{name}.json", results / "eval.json"]
    rest = sorted(p for p in results.glob("eval*.json") if p not in first)
    return [p for p in first if p.is_file()] + rest


def pick_row(table: dict[str, Any], name: str, mode: str | None) -> str | None:
    """The table row of an operator: its exact name, else its rows (``mqn fast (int8+DR)``) in that mode.

    The served (quantized) row is preferred to a ``(float)`` twin.

    >>> pick_row({"mqn fast (float)": {}, "mqn fast (int8+DR)": {}, "bt2408": {}}, "mqn", "fast")
    'mqn fast (int8+DR)'
    """
    if name in table and mode is None:
        return name
    rows = [k for k in table if k.startswith(f"{name} ")]
    if mode is not None:
        rows = [k for k in rows if mode in k.removeprefix(name).split()]
    rows.sort(key=lambda k: "(float)" in k)
    return rows[0] if rows else None


def quality_row(name: str, mode: str | None, results: Path = MODEL_RESULTS) -> dict[str, Any] | None:
    """An operator's validation quality from the first evaluation table that has it, with its source."""
    for path in eval_files(name, results):
        record = json.loads(path.read_text())
        table = record.get("table", {})
        key = pick_row(table, name, mode)
        if key is None:
            continue
        values = table[key]
        try:
            source = str(path.relative_to(ROOT))
        except ValueError:
            source = str(path)
        quality = {k: values.get(k) for k in QUALITY_KEYS}
        if "highlight_pu21_mse" not in values:  # an older table: its highlights were a per-case mean of PSNRs
            quality["highlight_pu21_psnr"] = None
        return {
            **quality,
            "source": source,
            "row": key,
            "size": record.get("size"),
            "cases": values.get("cases", record.get("cases")),
        }
    return None


# --- artifacts and flicker ------------------------------------------------------------------------------


def artifact_frames(limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The shared artifact tool's default frames (native size), or the first ``limit`` of them."""
    from models.mqn.visual_checks import DEFAULT_FRAMES, read_frames

    out: list[tuple[str, np.ndarray]] = []
    for clip, indices in DEFAULT_FRAMES:
        if limit is not None:
            indices = indices[: max(0, limit - len(out))]
        if indices:
            out += [(f"{clip}:{i}", f) for i, f in zip(indices, read_frames(clip, indices), strict=True)]
    return out


def artifact_scores(op: Callable[..., Any], frames: Sequence[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """The tool's measures averaged over frames (its MEAN row: NaN-aware), plus each frame's."""
    from models.mqn.visual_checks import score
    from service.colour.description import ColourDescription
    from service.operators import create_operator

    colour = ColourDescription.still()  # the tool converts PNG stills
    bt2408 = create_operator("bt2408", peak_nits=PEAK_NITS)
    per_frame = {}
    for key, frame in frames:
        s = score(op(frame[None], colour)[0], frame, bt2408(frame[None], colour)[0])
        per_frame[key] = {k: getattr(s, k) for k in ARTIFACT_KEYS}
    mean = {}
    for k in ARTIFACT_KEYS:
        values = np.array([v[k] for v in per_frame.values()], np.float64)
        mean[k] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return {**mean, "frames": len(per_frame), "per_frame": per_frame}


def streamed_deltas(outputs: Iterator[np.ndarray], chunk: int = 8) -> tuple[float, float]:
    """:func:`bench.flicker.deltas` over a long sequence, ``chunk`` frame pairs at a time.

    Both measures are means over consecutive pairs, so chunks that share their end frames and are weighted
    by their pair counts give exactly the whole-sequence value, without holding every output frame.
    """
    from bench.flicker import deltas

    pix = glob = 0.0
    pairs = 0
    window: list[np.ndarray] = []
    for out in outputs:
        window.append(out)
        if len(window) == chunk + 1:
            p, g = deltas(window)
            pix, glob, pairs = pix + p * chunk, glob + g * chunk, pairs + chunk
            window = window[-1:]
    if len(window) > 1:
        n = len(window) - 1
        p, g = deltas(window)
        pix, glob, pairs = pix + p * n, glob + g * n, pairs + n
    if pairs == 0:
        raise ValueError("flicker needs at least two frames")
    return pix / pairs, glob / pairs


def flicker_scores(
    ops: dict[str, Callable[..., Any]], clips: dict[str, tuple[np.ndarray, Any]]
) -> dict[str, dict[str, Any]]:
    """Per operator: |ΔPQ| and |Δ mean PQ| per clip, their ratios to ``bt2408``, and the ratios' means."""
    from bench.flicker import clip_case
    from service.operators import create_operator

    reference = create_operator("bt2408", peak_nits=PEAK_NITS)
    out: dict[str, dict[str, Any]] = {label: {"per_clip": {}} for label in ops}
    for clip, (rgb, colour) in clips.items():
        ref = streamed_deltas(reference(f[None], colour)[0] for f in rgb)
        for label, op in ops.items():
            measured = streamed_deltas(op(f[None], colour)[0] for f in rgb)
            out[label]["per_clip"][clip] = clip_case(len(rgb), measured, ref)
    for scores in out.values():
        moving = [c for c in scores["per_clip"].values() if c["ratio_pix_vs_bt2408"] is not None]
        for key in ("ratio_pix_vs_bt2408", "ratio_glob_vs_bt2408"):
            scores[key] = statistics.fmean(c[key] for c in moving) if moving else None
    return out


# --- the table ------------------------------------------------------------------------------------------


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if spec == "params":
        return f"{value / 1e6:.2f} M" if value else "0"
    return format(value, spec)


COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    # header, row path, format, better ("low", "high", "one" / "zero" = closest to 1 / 0, "" = no winner)
    ("params", "params", "params", "low"),
    ("GMACs 1080p", "gmacs_1080p", ".3g", "low"),
    ("ms/frame p50", "latency_ms.median", ".1f", "low"),
    ("ms/frame p90", "latency_ms.p90", ".1f", "low"),
    ("peak RSS MB", "peak_rss_mb", ".0f", "low"),
    ("abs PU21-PSNR ↑", "quality.abs_pu21_psnr", ".2f", "high"),
    ("shape PU21-PSNR ↑", "quality.shape_pu21_psnr", ".2f", "high"),
    ("highlights PU21-PSNR ↑", "quality.highlight_pu21_psnr", ".2f", "high"),
    ("mid-tone ratio", "quality.midtone_ratio", ".3f", "one"),
    ("abs ΔE_ITP ↓", "quality.abs_de_itp", ".2f", "low"),
    ("reversal % ↓", "artifacts.reversal_pct", ".3f", "low"),
    ("darkened % ↓", "artifacts.darkened_pct", ".3f", "low"),
    ("hue ° ↓", "artifacts.hue_deg", ".2f", "low"),
    ("saturation ×bt2408", "artifacts.saturation", ".3f", "one"),
    ("shadows stops vs bt2408", "artifacts.shadow_stops", "+.2f", "zero"),
    ("p99.9 cd/m²", "artifacts.p999_nits", ".0f", ""),
    ("flicker ΔPQ ×bt2408", "flicker.ratio_pix_vs_bt2408", ".2f", "low"),
    ("flicker Δmean ×bt2408", "flicker.ratio_glob_vs_bt2408", ".2f", "low"),
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table: one row per operator and mode, ``–`` where nothing was measured."""
    head = "| operator | mode | " + " | ".join(c[0] for c in COLUMNS) + " |\n"
    head += "|---|---|" + "---|" * len(COLUMNS) + "\n"
    body = [
        f"| {r['operator']} | {r['mode'] or ('native' if r['kind'] == 'learned' else '–')} | "
        + " | ".join(_fmt(_get(r, path), spec) for _, path, spec, _ in COLUMNS)
        + " |"
        for r in rows
    ]
    return head + "\n".join(body) + "\n"


def winners(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per axis the best learned row (and the anchor, if it does better); then where others beat mqn."""

    def key(better: str, value: float) -> float:
        return {"low": value, "high": -value, "one": abs(value - 1.0), "zero": abs(value)}[better]

    def best(candidates: Sequence[dict[str, Any]], path: str, better: str) -> dict[str, Any] | None:
        scored = [r for r in candidates if isinstance(_get(r, path), int | float)]
        scored = [r for r in scored if not math.isnan(_get(r, path))]
        return min(scored, key=lambda r: key(better, _get(r, path))) if scored else None

    learned = [r for r in rows if r["kind"] == "learned"]
    anchors = [r for r in rows if r["kind"] == "anchor"]
    lines = []
    for header, path, spec, better in COLUMNS:
        top = best(learned, path, better) if better else None
        if top is None:
            continue
        text = f"- {header}: {top['label']} ({_fmt(_get(top, path), spec)})"
        anchor = best(anchors, path, better) if path not in ("params", "gmacs_1080p") else None
        if anchor is not None and key(better, _get(anchor, path)) < key(better, _get(top, path)):
            text += f"; anchor {anchor['label']} better ({_fmt(_get(anchor, path), spec)})"
        lines.append(text)
    mqn = [r for r in learned if r["operator"] == "mqn"]
    for name in sorted({r["operator"] for r in learned} - {"mqn"}):
        if not mqn:
            break
        beats = []
        for header, path, _, better in COLUMNS:
            ours = best([r for r in learned if r["operator"] == name], path, better) if better else None
            theirs = best(mqn, path, better) if better else None
            if ours and theirs and key(better, _get(ours, path)) < key(better, _get(theirs, path)):
                beats.append(header)
        lines.append(f"- {name} beats mqn (its best mode per axis) on: {', '.join(beats) or 'nothing'}")
    return lines


def notes(settings: dict[str, Any]) -> list[str]:
    """How each group of columns was measured, for the groups that were (``–`` columns say the rest)."""
    out = ["- Parameters: the model's export metadata (else its .tflite weights)."]
    if settings["process"]:
        out.append(
            "- GMACs: every convolution / dense op of the LiteRT graphs the operator runs for one 1920×1080 "
            "frame, at the shapes it runs them with. Peak RSS: VmHWM of a fresh process holding only that "
            "operator, converting the latency frames."
        )
    if settings["process"] and settings["frames"]:
        out.append(
            f"- Latency: the whole operator per 1080p frame, batch 1, {settings['warmup']} warm-up then "
            f"{settings['frames']} timed frames of {settings['clip']} scaled to 1920×1080, in that process."
        )
    if settings["artifact_frames"]:
        out.append(
            "- Artifacts: `../shared/tools/itm_artifacts.py`'s measures (`models/mqn/visual_checks.py`) on "
            f"{settings['artifact_frames']} of its default frames, mean."
        )
    if settings["flicker_clips"]:
        out.append(
            f"- Flicker: `bench/flicker.py`'s deltas over the first {settings['flicker_frames']} frames of "
            f"{', '.join(settings['flicker_clips'])}, as a ratio to bt2408, mean over the clips whose frames "
            "change (a clip whose `bt2408` output does not change has no ratio)."
        )
    return out


def markdown(rows: Sequence[dict[str, Any]], settings: dict[str, Any], skipped: dict[str, str]) -> str:
    """The section for ``models/MODEL_CARD.md``: table, what it was measured on, sources, who wins where."""
    env = settings["environment"]
    out = [
        "## The learned operators side by side (issue 11, `python -m bench.models`)",
        "",
        table(rows),
        f"Measured {env['when']} at {env['git_sha']} on {env['cpus']} CPUs ({env['machine']}), load average "
        f"{env['loadavg'][0]} at the start (latencies need an idle machine); {settings['wall_s']:.0f} s "
        "in all.",
        "",
        *notes(settings),
    ]
    if settings["quality"]:
        out += ["", "Quality (validation set, absolute and shape views), per row:", ""]
        for r in rows:
            q = r["quality"]
            if q:
                size = "×".join(str(x) for x in q["size"]) if q.get("size") else "?"
                where = f"`{q['source']}`, row `{q['row']}` ({q['cases']} cases at {size})"
            else:
                where = "in no evaluation table (`python -m models.evaluate --model NAME` writes one)"
            out.append(f"- {r['label']}: {where}")
    problems = [f"- {r['label']}: failed: {r['error'].splitlines()[-1]}" for r in rows if r.get("error")]
    problems += [f"- {spec}: skipped, {reason}" for spec, reason in skipped.items()]
    if problems:
        out += ["", "Not measured:", "", *problems]
    lines = winners(rows)
    if lines:
        out += ["", "Best learned operator per axis:", "", *lines]
    return "\n".join(out) + "\n"


# --- main -----------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The command line (nothing heavy imported: the child processes parse it too)."""
    p = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__.split("\n")[0])
    p.add_argument(
        "--operators",
        nargs="*",
        default=None,
        metavar="NAME[:MODE]",
        help=f"rows to measure (default: {' '.join(ANCHORS)} and every learned operator, every mode)",
    )
    p.add_argument(
        "--frames", type=int, default=30, help="timed 1080p frames per operator and mode (%(default)s)"
    )
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed frames before them, at least 1 (%(default)s)"
    )
    p.add_argument(
        "--clip", type=Path, default=None, help="clip the 1080p frames are scaled from (bench/_server.py's)"
    )
    p.add_argument("--flicker-frames", type=int, default=48, help="frames per clip (bench/flicker.py's 48)")
    p.add_argument("--flicker-clips", nargs="*", default=None, help="default: bench/flicker.py's clips")
    p.add_argument("--artifact-frames", type=int, default=None, help="first N of the tool's frames (all)")
    p.add_argument("--skip-process", action="store_true", help="no child processes: no latency/RSS/GMACs")
    p.add_argument("--skip-latency", action="store_true", help="children convert one frame (RSS, GMACs)")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-artifacts", action="store_true")
    p.add_argument("--skip-flicker", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    """Measure every row, print and write the table."""
    from bench._server import CLIP
    from bench.flicker import DATA as FLICKER_DATA
    from bench.flicker import DEFAULT_CLIPS

    args.clip = args.clip or CLIP
    args.flicker_clips = args.flicker_clips or list(DEFAULT_CLIPS)

    started = time.perf_counter()
    env = environment()
    if env["loadavg"][0] > 0.5:
        print(f"warning: load average {env['loadavg'][0]} — latencies will be slower than on an idle machine")
    targets, skipped = discover(args.operators)
    for spec, reason in skipped.items():
        print(f"skipped {spec}: {reason}")
    rows = [new_row(t) for t in targets]
    timed = 0 if args.skip_latency or args.skip_process else args.frames
    settings: dict[str, Any] = {
        "environment": env,
        "operators": [t.label for t in targets],
        "skipped": skipped,
        "frames": timed,
        "warmup": max(1, args.warmup),
        "clip": args.clip.name,
        "size": [WIDTH, HEIGHT],
        "peak_nits": PEAK_NITS,
        "flicker_frames": args.flicker_frames,
        "flicker_clips": [] if args.skip_flicker else args.flicker_clips,
        "artifact_frames": 0,
        "process": False,
        "quality": not args.skip_quality,
    }

    if not args.skip_process:
        if not args.clip.is_file():
            print(f"skipped latency/RSS/GMACs: clip {args.clip} not found")
        else:
            from bench._server import load_frames

            unique = min(settings["warmup"] + timed, 64)
            with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
                frames = write_frames(
                    load_frames(HEIGHT, WIDTH, unique, args.clip), Path(tmp) / "frames.rgb", HEIGHT, WIDTH
                )
                settings["process"] = True
                for target, row in zip(targets, rows, strict=True):
                    try:
                        measured = measure_process(target, frames, settings["warmup"], timed)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        row["error"] = str(exc)
                        print(f"'{target.label}': failed: {str(exc).splitlines()[-1]}")
                        continue
                    fill_process(row, measured, settings["warmup"])
                    ms = measured["latency_ms"]
                    head = line(target.label, len(ms), sum(ms) / 1e3) if ms else f"'{target.label}':"
                    lat = row["latency_ms"]
                    print(
                        f"{head}; p50 {_fmt(lat.get('median'), '.1f')} ms, p90 {_fmt(lat.get('p90'), '.1f')} "
                        f"ms; peak RSS {row['peak_rss_mb']:.0f} MB; GMACs {_fmt(row['gmacs_1080p'], '.3g')}"
                    )

    if not args.skip_quality:
        for target, row in zip(targets, rows, strict=True):
            row["quality"] = quality_row(target.name, target.mode)

    ops = {}
    if not (args.skip_artifacts and args.skip_flicker):
        ops = {t.label: t.create() for t in targets}
    if not args.skip_artifacts:
        frames_a = artifact_frames(args.artifact_frames)
        settings["artifact_frames"] = len(frames_a)
        for target, row in zip(targets, rows, strict=True):
            row["artifacts"] = artifact_scores(ops[target.label], frames_a)
            a = row["artifacts"]
            print(
                f"'{target.label}' artifacts: reversal {a['reversal_pct']:.3f} %, darkened "
                f"{a['darkened_pct']:.3f} %, hue {a['hue_deg']:.2f}°, saturation {a['saturation']:.3f}x, "
                f"shadows {a['shadow_stops']:+.2f} stops, p99.9 {a['p999_nits']:.0f} cd/m²"
            )
    if not args.skip_flicker:
        from bench.flicker import read_clip

        clips = {c: read_clip(FLICKER_DATA / c, args.flicker_frames) for c in args.flicker_clips}
        scores = flicker_scores(ops, clips)
        for target, row in zip(targets, rows, strict=True):
            row["flicker"] = scores[target.label]
            f = row["flicker"]
            pix, glob = _fmt(f["ratio_pix_vs_bt2408"], ".2f"), _fmt(f["ratio_glob_vs_bt2408"], ".2f")
            print(f"'{target.label}' flicker: ΔPQ x{pix}, Δmean x{glob} (vs bt2408)")

    settings["wall_s"] = time.perf_counter() - started
    md = markdown(rows, settings, skipped)
    print()
    print(md)
    settings["loadavg_at_start"] = settings.pop("environment")["loadavg"]  # _report.write adds the rest
    print(f"wrote {write('models', rows, settings)} and {write_markdown('models', md)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``--child`` is the per-operator child process)."""
    args = parser().parse_args(argv)
    if args.child is not None:
        result = child(json.loads(args.child))
        print(CHILD_MARK + json.dumps(result), flush=True)
        return 0
    from bench.flicker import DATA

    if not DATA.exists():
        print(f"skipped: no clips at {DATA}")
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
