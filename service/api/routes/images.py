"""``POST /v1/images``: one SDR PNG/JPEG in, HDR out synchronously (PQ PNG with cICP/mDCV/cLLI, or EXR)."""

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from service.api.deps import AUTH, StateDep
from service.api.schemas import Problem
from service.api.uploads import receive_upload
from service.errors import InputError
from service.inference.types import BatchKey, resolve_spec
from service.operators import Mode
from service.pipeline import ImageFormat, write_image

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


def _encode(nits: np.ndarray, kind: ImageFormat, peak_nits: float, tmp_dir: Path) -> bytes:
    """The still as the CLI writes it (:func:`service.pipeline.write_image`), as bytes."""
    path = tmp_dir / f"{secrets.token_hex(8)}.{kind}"
    try:
        write_image(path, nits, kind, peak_nits=peak_nits)
        return path.read_bytes()
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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
    request: Request, state: StateDep,
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
    from service.images.read import read_sdr_image

    settings = state.settings
    kind = _pick_format(format, request.headers.get("accept", ""))
    peak = peak_nits or settings.default_peak_nits
    spec = resolve_spec(operator or settings.default_operator, peak, mode or settings.default_mode)
    tmp_dir = settings.data_dir / "tmp"
    upload = await receive_upload(request, tmp_dir, settings.upload_limit_bytes, default_name="image")
    started = time.perf_counter()
    try:
        image = await asyncio.to_thread(
            read_sdr_image, upload.path, max_pixels=settings.max_width * settings.max_height,
            name=upload.shown_name,
        )
    finally:
        upload.discard()
    decoded = time.perf_counter()
    state.metrics.stage_seconds.labels(stage="decode").observe(decoded - started)
    height, width = image.rgb.shape[:2]
    key = BatchKey(spec, height, width, image.colour, "nits")
    result = await state.batcher.submit(image.rgb, key)
    nits = np.asarray(result.data, np.float32)
    encode_start = time.perf_counter()
    body = await asyncio.to_thread(_encode, nits, kind, peak, tmp_dir)
    done = time.perf_counter()
    metrics = state.metrics
    metrics.stage_seconds.labels(stage="encode").observe(done - encode_start)
    metrics.frame_latency_seconds.labels(endpoint="images").observe(done - started)
    metrics.frames_total.labels(endpoint="images", operator=spec.name).inc()
    stem = Path(upload.filename).stem or "image"
    headers = {"Content-Disposition": f'inline; filename="{stem}_hdr.{kind}"'}
    if image.warnings:
        headers["X-ITM-Warnings"] = "; ".join(image.warnings)[:1000]
    return Response(body, media_type=MEDIA[kind], headers=headers)
