"""The FastAPI application factory and its lifespan (engine warm-up, batcher, jobs, graceful drain)."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.api.problems import document_problems, install_problem_handlers
from service.api.routes import health, images, jobs, operators, stream
from service.api.state import ServiceState
from service.config import Settings
from service.inference.batcher import DynamicBatcher
from service.inference.engine import ModelFiles
from service.inference.pool import WorkerPool
from service.inference.types import BatcherConfig, resolve_spec
from service.jobs.config import JobConfig
from service.jobs.manager import JobManager
from service.jobs.models import JobState
from service.jobs.runner import Converter
from service.jobs.store import JobStore
from service.logging import configure_logging
from service.metrics import Metrics, build_metrics
from service.operators.registry import register_operator
from service.web import routes as web

log = logging.getLogger(__name__)

STREAM_DRAIN_TIMEOUT_S = 10.0
"""How long a stopping server waits for open streams to answer the frames they accepted."""


@dataclass(frozen=True)
class LearnedModel:
    """What ``itm_model_info`` says of a learned operator: how it is quantized and where its metadata is.

    The metadata is the JSON its export writes beside the model files (``mqn.json``, ``expandnet.json``),
    read from where the operator itself reads its model, so the label names the model actually served.
    """

    quant: str
    meta: Callable[[], dict[str, Any]]


def _exported_meta(module: str) -> Callable[[], dict[str, Any]]:
    """Reader of the metadata of the operator in ``module`` (its ``META_FILE`` in its ``artifacts_dir()``)."""

    def read() -> dict[str, Any]:
        # Imported here: learned operators' modules load only when one is used (operators/registry.py).
        operator = import_module(module)
        meta: dict[str, Any] = json.loads((operator.artifacts_dir() / operator.META_FILE).read_text())
        return meta

    return read


LEARNED_MODELS: dict[str, LearnedModel] = {
    # All: an int8 network (backbone / features) and a float head.
    "mqn": LearnedModel("int8+float", lambda: ModelFiles.load().meta),
    "expandnet": LearnedModel("int8+float", _exported_meta("service.operators.expandnet")),
    "singlehdr": LearnedModel("int8+float", _exported_meta("service.operators.singlehdr")),
    "region_lstm": LearnedModel("int8+float", _exported_meta("service.operators.region_lstm")),
}
"""Learned operators by name; any other operator is classical (quant ``none``, no version)."""


def model_quant(name: str) -> str:
    """``itm_model_info`` quant label: the learned operator's quantization, ``none`` for classical ones."""
    model = LEARNED_MODELS.get(name)
    return model.quant if model else "none"


def model_version(name: str) -> str:
    """``itm_model_info`` version label: the served model's training run and format, or empty.

    For example ``mqn_v38 (format 5)``; classical operators have no version.

    Raises
    ------
    EngineError, OSError
        If a learned operator's metadata cannot be read (called after its warm-up, which read it already).
    """
    model = LEARNED_MODELS.get(name)
    if model is None:
        return ""
    meta = model.meta()
    training = meta.get("training") or {}
    return f"{training.get('run', 'unknown')} (format {meta.get('version', 1)})"


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestMetricsMiddleware:
    """Counts ``itm_requests_total{route,status}`` by route *template* (bounded label set).

    A plain ASGI middleware rather than ``BaseHTTPMiddleware``, which would buffer streamed bodies.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, recording its route template and final status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests_total.labels(route=template, status=str(status)).inc()


BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "One of ITM_API_KEYS; needed only when the server is configured with keys.",
}


def document_bearer_auth(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the optional bearer auth on every operation that can answer 401 (in place).

    Auth is a plain dependency (:mod:`service.api.auth`), which FastAPI does not document; without a
    security scheme, clients and schema tools cannot know a key may be needed. ``{}`` as the second
    requirement says "or none", which is what a server without keys accepts.
    """
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER_SCHEME
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "401" in operation.get("responses", {}):
                operation["security"] = [{"bearer": []}, {}]
    return schema


class _App(FastAPI):
    """FastAPI whose OpenAPI document describes the errors and the auth the app really has."""

    def openapi(self) -> dict[str, Any]:
        """The generated document, with errors and auth documented (built once)."""
        if self.openapi_schema is None:
            self.openapi_schema = document_bearer_auth(document_problems(super().openapi()))
        return self.openapi_schema


async def _warm_up(state: ServiceState) -> None:
    """Warm the default operator on every worker in a thread; flip readiness when done."""
    settings = state.settings
    try:
        spec = resolve_spec(settings.default_operator, settings.default_peak_nits, settings.default_mode)
        height, width = settings.warmup_size
        started = time.perf_counter()
        await asyncio.to_thread(state.pool.warm_up, [spec], height, width)
        quant = model_quant(spec.name)
        version = model_version(spec.name)
        state.metrics.model_info.labels(name=spec.name, mode=spec.mode, quant=quant, version=version).set(1)
        state.ready = True
        log.info("ready: %s warmed in %.1f s", spec.name, time.perf_counter() - started)
    except Exception as exc:
        state.warmup_error = str(exc)
        log.exception("warm-up failed")


async def drain_streams(app: FastAPI, timeout_s: float = STREAM_DRAIN_TIMEOUT_S) -> None:
    """Tell open streams the server is stopping and wait until they have answered their in-flight frames.

    Called by the server *before* it closes connections (uvicorn would otherwise close every WebSocket with
    1012 at once); streams then finish what they accepted and close with 1001.
    """
    state: ServiceState | None = getattr(app.state, "itm", None)
    if state is None:
        return
    state.shutting_down.set()
    if state.streams:
        await asyncio.wait(state.streams, timeout=timeout_s)


def create_app(
    settings: Settings, *, registry: CollectorRegistry | None = None, converter: Converter | None = None
) -> FastAPI:
    """Build the service app; nothing starts until the lifespan runs (uvicorn or ``TestClient``).

    Parameters
    ----------
    settings : Settings
        Validated configuration.
    registry : CollectorRegistry, optional
        Where metrics register; a fresh one by default so several apps (tests) can coexist.
    converter : callable, optional
        Stand-in for :func:`service.pipeline.convert_video` (tests).

    Raises
    ------
    ValueError
        If an extra operator's name is already registered by another path in this process.
    """
    for path in settings.extra_operators:  # start-up registers them; validating settings only checks them
        register_operator(path)
    metrics = build_metrics(
        registry or CollectorRegistry(), settings.max_batch_size, job_states=[s.value for s in JobState]
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        pool = WorkerPool(settings.workers)
        config = BatcherConfig(
            settings.max_batch_size, settings.max_queue_delay_s, settings.queue_size, settings.workers
        )
        batcher = DynamicBatcher(config, pool, metrics)
        batcher.start()
        state = ServiceState(settings, metrics, pool, batcher)
        store = JobStore(settings.data_dir / "jobs.sqlite3")
        state.jobs = JobManager(JobConfig.from_settings(settings), store, batcher, metrics, converter)
        app.state.itm = state
        warm = asyncio.get_running_loop().create_task(_warm_up(state))
        await state.jobs.start()
        log.info("itmstream up: %d worker(s), data in %s", settings.workers, settings.data_dir)
        try:
            yield
        finally:
            state.shutting_down.set()
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
            # Streams see shutting_down, finish their in-flight frames and close with 1001.
            if state.streams:
                await asyncio.wait(state.streams, timeout=STREAM_DRAIN_TIMEOUT_S)
            await state.jobs.stop()
            await batcher.stop(drain=True)
            await asyncio.to_thread(pool.shutdown)
            store.close()
            log.info("itmstream stopped")

    app = _App(
        title="itmstream",
        version="0.1.0",
        summary="Real-time inverse tone mapping: SDR video and game frames to HDR10 (PQ BT.2020)",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.include_router(health.router)
    app.include_router(operators.router)
    app.include_router(jobs.router)
    app.include_router(images.router)
    app.include_router(stream.router)
    app.include_router(web.router)
    return app
