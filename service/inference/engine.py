"""LiteRT runtime of the learned operators: the only module that imports ``ai_edge_litert``.

One :class:`MQNEngine` per process loads the artefact metadata; each *thread* that calls :meth:`MQNEngine.run`
gets its own pair of interpreters (LiteRT interpreters are not thread-safe, and ``invoke()`` releases the
GIL, so two worker threads really run in parallel). Interpreters are cached per input shape: resizing
costs ~1.5 s at 1080p and dynamic shapes fall out of XNNPACK, so a shape is set up once and reused.
TensorFlow is never imported here. :class:`LiteRTModel` is the same per-thread, per-shape runner for any one
model file with named inputs; the learned operators other than MQN are built on it.
"""

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from service.errors import EngineError
from service.timing import StageClock

log = logging.getLogger(__name__)

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "models" / "artifacts"
"""Where ``python -m models.export`` writes, and where the shipped weights live."""


def artifacts_dir(dir_env: str) -> Path:
    """Where a learned model is read from: the directory ``dir_env`` names, else the shipped artefacts."""
    return Path(os.environ.get(dir_env) or ARTIFACTS_DIR)


@contextmanager
def map_litert_errors() -> Iterator[None]:
    """Translate LiteRT's ``RuntimeError``/``ValueError`` into :class:`EngineError` at this boundary.

    Raises
    ------
    EngineError
        For any failure inside the interpreter (allocation, resize, invoke).
    """
    try:
        yield
    except EngineError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise EngineError(f"LiteRT failed: {exc}") from exc


@dataclass(frozen=True)
class ModelFiles:
    """Paths and metadata of one exported MQN (``mqn.json`` next to two ``.tflite`` files)."""

    backbone: Path
    head: Path
    meta: dict[str, Any]

    @classmethod
    def load(cls, directory: Path = ARTIFACTS_DIR) -> "ModelFiles":
        """Read ``mqn.json`` and check both model files exist.

        Raises
        ------
        EngineError
            If the metadata or a model file is missing.
        """
        meta_path = directory / "mqn.json"
        if not meta_path.exists():
            raise EngineError(f"MQN metadata {meta_path} is missing; run `python -m models.export`")
        meta = json.loads(meta_path.read_text())
        files = cls(directory / meta["backbone"], directory / meta["head"], meta)
        for p in (files.backbone, files.head):
            if not p.exists():
                raise EngineError(f"MQN model file {p} is missing")
        return files

    @property
    def stride(self) -> int:
        """Inputs are padded to a multiple of this (the backbone's total downsampling)."""
        return int(self.meta.get("stride", 32))


class Predictor(Protocol):
    """What the ``mqn`` operator needs from a runtime (the LiteRT engine, or a float model in evaluation)."""

    @property
    def stride(self) -> int:
        """Spatial sizes the network is run at are multiples of this."""
        ...

    @property
    def meta(self) -> dict[str, Any]:
        """Artefact metadata (curve knots, processing resolutions, ``peak_nits`` ...)."""
        ...

    def run(
        self,
        sdr: npt.NDArray[np.uint8],
        clock: StageClock | None = None,
        cells: npt.NDArray[np.float32] | None = None,
    ) -> npt.NDArray[np.float32]:
        """N x h x w x 3 uint8 SDR (h, w multiples of ``stride``) -> N x h/g x w/g x K curve knots (PQ).

        ``cells`` (N x h/g x w/g x C) for, and only for, a model that reads cell statistics.
        """
        ...


def _input_role(name: str) -> str:
    """``features``, ``sdr`` or ``cells`` from a LiteRT input name such as ``serving_default_sdr:0``.

    Raises
    ------
    EngineError
        For an input the engine does not know how to feed.
    """
    for role in ("features", "sdr", "cells"):
        if role in name:
            return role
    raise EngineError(f"MQN head input {name!r} is not the features, the SDR frame or the cell statistics")


class _Pair:
    """Backbone + head interpreters set up for one input shape (one thread only).

    The int8 backbone turns the low-resolution uint8 frame into float features at the grid's resolution;
    the float head turns those (and, if it has a global path, the same frame as float) into the grid of
    tone-curve knots.
    """

    def __init__(self, files: ModelFiles, shape: tuple[int, int, int], threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

        n, h, w = shape
        with map_litert_errors():
            self.backbone = Interpreter(model_path=str(files.backbone), num_threads=threads)
            self.head = Interpreter(model_path=str(files.head), num_threads=threads)
            self.b_in = self.backbone.get_input_details()[0]["index"]
            self.backbone.resize_tensor_input(self.b_in, [n, h, w, 3], strict=False)
            self.backbone.allocate_tensors()
            self.b_out = self.backbone.get_output_details()[0]["index"]
            # Dynamic-shape models only know their output shape after an invoke; it doubles as warm-up.
            self.backbone.set_tensor(self.b_in, np.zeros((n, h, w, 3), np.uint8))
            self.backbone.invoke()
            feat_shape = list(self.backbone.get_tensor(self.b_out).shape)
            # A head with a global path also reads the low-resolution frame itself (float, [0, 1]).
            details = {_input_role(d["name"]): d for d in self.head.get_input_details()}
            self.h_in = details["features"]["index"]
            self.h_sdr = details["sdr"]["index"] if "sdr" in details else None
            # A format-6 head also reads per-cell statistics of the full-resolution frame.
            self.h_cells = details["cells"]["index"] if "cells" in details else None
            self.head.resize_tensor_input(self.h_in, feat_shape, strict=False)
            if self.h_sdr is not None:
                self.head.resize_tensor_input(self.h_sdr, [n, h, w, 3], strict=False)
            if self.h_cells is not None:
                channels = int(details["cells"]["shape_signature"][-1])
                self.head.resize_tensor_input(self.h_cells, [*feat_shape[:3], channels], strict=False)
            self.head.allocate_tensors()
            self.h_out = self.head.get_output_details()[0]["index"]

    def __call__(
        self, sdr: npt.NDArray[np.uint8], clock: StageClock, cells: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float32]:
        if cells is None and self.h_cells is not None:
            raise EngineError("this MQN head reads cell statistics and the call gave none")
        if cells is not None and self.h_cells is None:
            raise EngineError("this MQN head does not read cell statistics and the call gave some")
        with map_litert_errors():
            self.backbone.set_tensor(self.b_in, sdr)
            self.backbone.invoke()
            clock.lap("backbone")
            self.head.set_tensor(self.h_in, self.backbone.get_tensor(self.b_out))
            if self.h_sdr is not None:
                self.head.set_tensor(self.h_sdr, sdr.astype(np.float32) * np.float32(1.0 / 255.0))
            if self.h_cells is not None:
                self.head.set_tensor(self.h_cells, np.ascontiguousarray(cells, np.float32))
            self.head.invoke()
            out = np.array(self.head.get_tensor(self.h_out), dtype=np.float32, copy=True)
            clock.lap("head")
            return out


class MQNEngine:
    """Runs the mixed-precision MQN (int8 backbone + dynamic-range head) on low-resolution NHWC batches.

    Parameters
    ----------
    files : ModelFiles, optional
        The exported model; defaults to the shipped artefacts.
    num_threads : int
        XNNPACK threads per interpreter (per worker thread).
    max_shapes : int
        Interpreter pairs kept per thread (LRU), one per processing size.
    """

    def __init__(self, files: ModelFiles | None = None, num_threads: int = 2, max_shapes: int = 3) -> None:
        if num_threads < 1 or max_shapes < 1:
            raise ValueError(f"num_threads {num_threads} and max_shapes {max_shapes} must be >= 1")
        self.files = files or ModelFiles.load()
        self.num_threads = num_threads
        self.max_shapes = max_shapes
        self._local = threading.local()

    @property
    def meta(self) -> dict[str, Any]:
        """The artefact metadata (convention, processing resolution, provenance)."""
        return self.files.meta

    @property
    def stride(self) -> int:
        """Network stride (inputs are padded to a multiple)."""
        return self.files.stride

    def _pairs(self) -> "OrderedDict[tuple[int, int, int], _Pair]":
        pairs: OrderedDict[tuple[int, int, int], _Pair] | None = getattr(self._local, "pairs", None)
        if pairs is None:
            pairs = OrderedDict()
            self._local.pairs = pairs
        return pairs

    def _pair(self, shape: tuple[int, int, int]) -> _Pair:
        pairs = self._pairs()
        if shape in pairs:
            pairs.move_to_end(shape)
            return pairs[shape]
        t0 = time.perf_counter()
        pair = _Pair(self.files, shape, self.num_threads)
        pairs[shape] = pair
        while len(pairs) > self.max_shapes:
            pairs.popitem(last=False)
        log.debug("MQN interpreters for %s ready in %.2f s", shape, time.perf_counter() - t0)
        return pair

    def run(
        self,
        sdr: npt.NDArray[np.uint8],
        clock: StageClock | None = None,
        cells: npt.NDArray[np.float32] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Predict the grid of tone curves for a batch.

        Parameters
        ----------
        sdr : numpy.ndarray
            N x h x w x 3 uint8 SDR code values (RGB), h and w multiples of :attr:`stride` (the operator
            downscales frames to such a size).
        clock : StageClock, optional
            Charged with ``backbone`` (int8 part) and ``head`` (float part).
        cells : numpy.ndarray, optional
            N x h/g x w/g x C float32 statistics of the full-resolution frames
            (:mod:`service.operators.cell_stats`): required by, and only by, a model that reads them
            (``meta["cell_stats"]``).

        Returns
        -------
        numpy.ndarray
            N x h/g x w/g x K float32: output PQ at curve knots 1..K of each grid cell (``meta``).

        Raises
        ------
        EngineError
            If LiteRT fails, a side is not a multiple of the stride, or ``cells`` is missing for a model
            that reads them (or given to one that does not).
        """
        clock = clock if clock is not None else StageClock()
        n, h, w, _ = sdr.shape
        if h % self.stride or w % self.stride:
            raise EngineError(f"input {w}x{h} is not a multiple of the network stride {self.stride}")
        pair = self._pair((n, h, w))
        return pair(np.ascontiguousarray(sdr, np.uint8), clock, cells)

    def warm_up(self, batch: int, height: int, width: int) -> None:
        """Build this thread's interpreters for a shape and run them once (first invoke is slow)."""
        self.run(np.zeros((batch, height, width, 3), np.uint8), cells=self.zero_cells(batch, height, width))

    def zero_cells(self, batch: int, height: int, width: int) -> npt.NDArray[np.float32] | None:
        """All-zero cell statistics for an input shape if the model reads them (warm-up, benchmarks)."""
        if not self.meta.get("cell_stats"):
            return None
        g = int(self.meta["grid_stride"])
        return np.zeros((batch, height // g, width // g, int(self.meta["cell_channels"])), np.float32)


def _feed_name(tensor_name: str) -> str:
    """The Keras input name inside a LiteRT tensor name: ``serving_default_frame:0`` -> ``frame``."""
    return re.sub(r":\d+$", "", tensor_name).removeprefix("serving_default_")


class _Shaped:
    """One interpreter of one model, set up for one set of input shapes (one thread only)."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with map_litert_errors():
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.inputs = {_feed_name(d["name"]): d["index"] for d in self.interpreter.get_input_details()}
            if set(self.inputs) != set(shapes):
                given = sorted(shapes)
                raise EngineError(f"{path.name} takes inputs {sorted(self.inputs)}, was given {given}")
            for name, shape in shapes.items():
                self.interpreter.resize_tensor_input(self.inputs[name], list(shape), strict=False)
            self.interpreter.allocate_tensors()
            self.outputs = [d["index"] for d in self.interpreter.get_output_details()]

    def __call__(self, inputs: Mapping[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        with map_litert_errors():
            for name, array in inputs.items():
                self.interpreter.set_tensor(self.inputs[name], array)
            self.interpreter.invoke()
            # Copies: the interpreter reuses its output buffers on the next invoke.
            return [np.array(self.interpreter.get_tensor(i), copy=True) for i in self.outputs]


class LiteRTModel:
    """Any one ``.tflite`` file on static shapes, for the learned operators other than MQN.

    The same rules as :class:`MQNEngine`: each calling thread gets its own interpreters (not thread-safe;
    ``invoke()`` releases the GIL), one per set of input shapes, least recently used first out (a resize
    costs ~1.5 s at 1080p and dynamic shapes fall out of XNNPACK). Inputs are fed by their Keras names.

    Parameters
    ----------
    path : Path
        The model file.
    num_threads : int
        XNNPACK threads per interpreter (per worker thread).
    max_shapes : int
        Interpreters kept per thread.

    Raises
    ------
    EngineError
        If the file is missing.
    """

    def __init__(self, path: Path, num_threads: int = 2, max_shapes: int = 3) -> None:
        if num_threads < 1 or max_shapes < 1:
            raise ValueError(f"num_threads {num_threads} and max_shapes {max_shapes} must be >= 1")
        if not path.exists():
            raise EngineError(f"model file {path} is missing")
        self.path = path
        self.num_threads = num_threads
        self.max_shapes = max_shapes
        self._local = threading.local()

    def _interpreters(self) -> "OrderedDict[tuple[tuple[str, tuple[int, ...]], ...], _Shaped]":
        cache: OrderedDict[tuple[tuple[str, tuple[int, ...]], ...], _Shaped] | None = getattr(
            self._local, "interpreters", None
        )
        if cache is None:
            cache = OrderedDict()
            self._local.interpreters = cache
        return cache

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """Run the model on named inputs (dtypes as the file declares them); its outputs, in its order.

        Raises
        ------
        EngineError
            If LiteRT fails or the names are not the model's inputs.
        """
        key = tuple(sorted((name, tuple(a.shape)) for name, a in inputs.items()))
        cache = self._interpreters()
        shaped = cache.get(key)
        if shaped is None:
            t0 = time.perf_counter()
            shaped = _Shaped(self.path, dict(key), self.num_threads)
            cache[key] = shaped
            while len(cache) > self.max_shapes:
                cache.popitem(last=False)
            log.debug("%s interpreter for %s ready in %.2f s", self.path.name, key, time.perf_counter() - t0)
        else:
            cache.move_to_end(key)
        return shaped({name: np.ascontiguousarray(a) for name, a in inputs.items()})
