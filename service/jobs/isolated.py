"""Run one conversion in a spawned child process, so a crash in FFmpeg/PyAV cannot take the server down.

Sequential ``convert_video`` calls in one process have been seen to abort with ``double free or corruption``
inside ``container.close()``; a child per job turns that into a failed job instead of a dead server. Progress
and the outcome come back over a queue; cancellation is a shared event the pipeline polls between batches.

On Linux the child asks the kernel to SIGKILL it when the thread that started it dies (``PR_SET_PDEATHSIG``):
a server killed with SIGKILL would otherwise leave an orphan converting into the job's folder while the
restarted server sweeps that folder and re-runs the job.
"""

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import EngineError, ItmError, JobCancelledError

_CTX = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class Outcome:
    """What the child reports when it finishes."""

    frames: int


_PR_SET_PDEATHSIG = 1
"""prctl(2) option: signal this process gets when its parent thread exits."""


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the server dies, however it dies (Linux only)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before prctl took effect: nobody wants the result
        os._exit(1)


def _child(
    src: str,
    dst: str,
    operator: str,
    params: dict[str, float | str],
    encode: dict[str, Any],
    decode: dict[str, Any],
    events: Any,
    cancel: Any,
    plugins: dict[str, str],
    parent: int,
) -> None:
    die_with_parent(parent)
    from service import errors
    from service.operators import create_operator
    from service.operators.registry import register_operator
    from service.pipeline import ConvertOptions, convert_video
    from service.video.decode import DecodeOptions
    from service.video.encode import EncodeOptions

    class _Cancel:
        def is_set(self) -> bool:
            return bool(cancel.is_set())

        def wait(self, timeout: float | None = None) -> bool:
            return bool(cancel.wait(timeout))

    def progress(p: Any) -> None:
        with contextlib.suppress(Exception):
            events.put_nowait(("progress", p.frames_done, p.frames_total, p.fps, p.eta_s))

    try:
        for path in plugins.values():  # a spawned child starts with the built-in operators only
            register_operator(path)
        result = convert_video(
            Path(src),
            Path(dst),
            create_operator(operator, **params),
            ConvertOptions(encode=EncodeOptions(**encode), decode=DecodeOptions(**decode)),
            progress=progress,
            cancel=_Cancel(),  # type: ignore[arg-type]
        )
        events.put(("ok", result.frames))
    except errors.ItmError as exc:
        events.put(("error", type(exc).__name__, str(exc)))
    except Exception as exc:
        events.put(("error", "EngineError", f"{type(exc).__name__}: {exc}"))


def run_isolated(
    src: Path,
    dst: Path,
    operator: str,
    params: dict[str, float | str],
    encode: dict[str, Any],
    decode: dict[str, Any],
    *,
    progress: Callable[[Any], None],
    cancel: threading.Event,
    plugins: Mapping[str, str] | None = None,
) -> Outcome:
    """Convert in a child process; blocks the calling thread until it ends.

    ``plugins`` (name -> ``module:Class``) are registered in the child before the operator is built.

    Raises
    ------
    ItmError
        The child's error, re-created from its class name (``EngineError`` if the child crashed).
    JobCancelledError
        If ``cancel`` was set.
    """
    from service import errors

    events = _CTX.Queue()
    child_cancel = _CTX.Event()
    process = _CTX.Process(
        target=_child,
        args=(
            str(src),
            str(dst),
            operator,
            params,
            encode,
            decode,
            events,
            child_cancel,
            dict(plugins or {}),
            os.getpid(),
        ),
        daemon=True,
    )
    process.start()
    try:
        while True:
            if cancel.is_set():
                child_cancel.set()
            try:
                message = events.get(timeout=0.1)
            except queue.Empty:
                if not process.is_alive():
                    with contextlib.suppress(queue.Empty):
                        message = events.get(timeout=0.5)
                        if message[0] != "progress":
                            break
                    raise EngineError(
                        f"the conversion process died (exit code {process.exitcode}); see the server log"
                    ) from None
                continue
            if message[0] == "progress":
                progress(_Progress(*message[1:]))
                continue
            break
    finally:
        if process.is_alive():
            child_cancel.set()
            process.join(10)
            if process.is_alive():
                process.kill()
        process.join()
        events.close()
    if message[0] == "ok":
        return Outcome(int(message[1]))
    cls = getattr(errors, message[1], EngineError)
    if not (isinstance(cls, type) and issubclass(cls, ItmError)):
        cls = EngineError
    if cls is JobCancelledError or cancel.is_set():
        raise JobCancelledError(message[2])
    raise cls(message[2])


@dataclass(frozen=True)
class _Progress:
    frames_done: int
    frames_total: int
    fps: float
    eta_s: float | None
