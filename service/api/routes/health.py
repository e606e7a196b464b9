"""Liveness, readiness and Prometheus metrics; never behind auth (probes and scrapers carry no keys)."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import StateDep
from service.api.problems import problem_response
from service.api.schemas import Health, Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the event loop answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Problem}})
async def readyz(state: StateDep) -> Health | Response:
    """Readiness: operators loaded and warmed on every worker, and not shutting down."""
    if state.shutting_down.is_set():
        return problem_response(503, "shutting down", headers={"Retry-After": "1"})
    if state.warmup_error is not None:
        return problem_response(503, f"warm-up failed: {state.warmup_error}")
    if not state.ready:
        return problem_response(503, "warming up operators", headers={"Retry-After": "1"})
    return Health(status="ready")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition of this app's registry."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
