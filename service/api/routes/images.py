"""``POST /v1/images``: one SDR PNG/JPEG in, HDR out synchronously (PQ PNG with cICP/mDCV/cLLI, or EXR)."""

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from service import pipeline
from service.api.deps import AUTH, StateDep
from service.api.schemas import Problem
from service.api.state import ServiceState
from service.api.uploads import Upload, receive_upload
from service.colour.description import ColourDescription
from service.errors import InputError, OverloadedError
from service.inference.batcher import DynamicBatcher
from service.inference.types import BatchKey, FrameResult, OperatorSpec, resolve_spec
from service.operators import Mode, Operator, OperatorInfo
from service.operators.base import Frames, Nits
from service.pipeline import ImageFormat, ImageResult

router = APIRouter(prefix="/v1/images", tags=["images"], dependencies=AUTH)

MEDIA: dict[ImageFormat, str] = {"png": "image/png", "exr": "image/x-exr"}


def _pick_format(query: str | None, accept: str) -> ImageFormat:
    """``?format=`` wins; else the first of image/png, image/x-exr (or image/aces) in Accept; else PNG.

    Raises
    ------
    InputError
        If ``format`` is neither png nor exr.
    """
    if query is not None:
        if query not in MEDIA:
            raise InputError(f"format '{query}' is not supported; expected one of {sorted(MEDIA)}")
        return "exr" if query == "exr" else "png"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("image/x-exr", "image/exr", "image/aces"):
            return "exr"
        if media == "image/png":
            return "png"
    return "png"


class _PooledStill(Operator):
    """The shared inference pool as the operator of :func:`service.pipeline.convert_image`.

    The conversion runs in a worker thread; its one frame is queued on the event loop's batcher with
    ``submit``, so a full queue refuses the still at once (503 + Retry-After), where a job's
    ``BatchedOperator`` waits for room. The route counts the frame under endpoint ``images``.
    """

    info: ClassVar[OperatorInfo] = OperatorInfo("pooled", "a still's frame on the shared worker pool")

    def __init__(
        self, spec: OperatorSpec, peak_nits: float, batcher: DynamicBatcher, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(peak_nits)
        self.spec = spec
        self._batcher = batcher
        self._loop = loop

    @property
    def name(self) -> str:
        """The pooled operator's name."""
        return self.spec.name

    @property
    def params(self) -> dict[str, float | str]:
        """The pooled operator's parameters, as resolved for this request."""
        return dict(self.spec.params)

    async def _submit(self, frame: Frames, key: BatchKey) -> FrameResult:
        return await self._batcher.submit(frame, key)

    def apply(self, frames: Frames, colour: ColourDescription) -> Nits:
        """Convert the still's frame on the pool; blocks the calling (non-loop) thread.

        Raises
        ------
        OverloadedError
            If the inference queue is full.
        EngineError
            If inference fails.
        """
        key = BatchKey(self.spec, frames.shape[1], frames.shape[2], colour, "nits")
        result = asyncio.run_coroutine_threadsafe(self._submit(frames[0], key), self._loop).result()
        return np.asarray(result.data, np.float32)[None]


def _convert(
    upload: Upload, operator: Operator, kind: ImageFormat, max_pixels: int
) -> tuple[bytes, ImageResult]:
    """Convert the upload with :func:`service.pipeline.convert_image` (worker thread) and read the result.

    The upload and the output are removed here, not in the route, so a request cancelled meanwhile still
    leaves no file behind.

    Raises
    ------
    ItmError
        Whatever the conversion raises (unusable image, overload, inference or write failure).
    """
    dst = upload.path.with_name(f"{secrets.token_hex(8)}.{kind}")
    try:
        name = upload.shown_name
        result = pipeline.convert_image(upload.path, dst, operator, max_pixels=max_pixels, name=name)
        return dst.read_bytes(), result
    finally:
        upload.discard()
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()


@contextlib.contextmanager
def _admitted(state: ServiceState) -> Iterator[None]:
    """Hold one of the server's still slots for the request, or refuse it at once.

    A still reaches the batcher only once a worker thread has decoded it, so the batcher's full queue alone
    no longer refuses a burst: the rest waited in the thread pool's unbounded queue (128 concurrent 1080p
    stills were all accepted, answered after 41-64 s). Admission counts the stills in flight instead and
    allows as many as the server can hold at once: its queue plus one frame per worker.

    Raises
    ------
    OverloadedError
        If that many stills are already in flight (503 + Retry-After).
    """
    capacity = state.settings.queue_size + state.settings.workers
    if state.stills_in_flight >= capacity:
        raise OverloadedError(
            f"{state.stills_in_flight} images are already being converted (the limit is {capacity}); "
            "retry shortly",
            retry_after_s=1.0,
        )
    state.stills_in_flight += 1
    try:
        yield
    finally:
        state.stills_in_flight -= 1


@router.post(
    "",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/x-exr": {}}},
        **{code: {"model": Problem} for code in (401, 413, 415, 422, 503, 507)},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
            "required": True,
        }
    },
)
async def convert_image(
    request: Request,
    state: StateDep,
    format: Annotated[ImageFormat | None, Query(description="png (PQ) or exr (linear)")] = None,
    operator: Annotated[str | None, Query()] = None,
    mode: Annotated[Mode | None, Query()] = None,
    peak_nits: Annotated[float | None, Query(ge=100.0, le=10000.0)] = None,
) -> Response:
    """Convert one SDR still: 16-bit PQ PNG (BT.2020; cICP, mDCV, cLLI) or OpenEXR (linear BT.2020 cd/m²).

    Raises
    ------
    InputError, UnsupportedFormatError, CorruptStreamError
        If the image is unusable.
    OverloadedError
        If the inference queue is full (503 + Retry-After).
    PayloadTooLargeError
        If the upload exceeds the limit.
    """
    settings = state.settings
    kind = _pick_format(format, request.headers.get("accept", ""))
    peak = peak_nits or settings.default_peak_nits
    spec = resolve_spec(operator or settings.default_operator, peak, mode or settings.default_mode)
    pooled = _PooledStill(spec, peak, state.batcher, asyncio.get_running_loop())
    tmp_dir = settings.data_dir / "tmp"
    with _admitted(state):
        upload = await receive_upload(request, tmp_dir, settings.upload_limit_bytes, default_name="image")
        started = time.perf_counter()
        body, result = await asyncio.to_thread(
            _convert, upload, pooled, kind, settings.max_width * settings.max_height
        )
        done = time.perf_counter()
    metrics = state.metrics
    metrics.stage_seconds.labels(stage="decode").observe(result.timings["decode"])
    metrics.stage_seconds.labels(stage="encode").observe(result.timings["encode"])
    metrics.frame_latency_seconds.labels(endpoint="images").observe(done - started)
    metrics.frames_total.labels(endpoint="images", operator=spec.name).inc()
    stem = Path(upload.filename).stem or "image"
    headers = {"Content-Disposition": f'inline; filename="{stem}_hdr.{kind}"'}
    if result.warnings:
        headers["X-ITM-Warnings"] = "; ".join(result.warnings)[:1000]
    return Response(body, media_type=MEDIA[kind], headers=headers)
