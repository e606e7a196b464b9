"""``/v1/stream``: the WebSocket frame stream (docs/PROTOCOL.md)."""

import asyncio
import logging

from fastapi import APIRouter, WebSocket

from service.api.auth import is_authorised
from service.api.deps import get_state
from service.stream.protocol import CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TRY_AGAIN
from service.stream.session import StreamSession

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """Serve one frame stream: auth, stream limit, then the session until it closes."""
    state = get_state(websocket)
    await websocket.accept()
    if not is_authorised(state.settings, websocket):
        await websocket.close(CLOSE_POLICY, "unauthorized")
        return
    if state.shutting_down.is_set():
        await websocket.close(CLOSE_GOING_AWAY, "server shutting down")
        return
    if len(state.streams) >= state.settings.max_streams:
        await websocket.close(
            CLOSE_TRY_AGAIN, f"too many streams ({len(state.streams)} open); try again later"
        )
        return
    task = asyncio.current_task()
    assert task is not None
    state.streams.add(task)
    state.metrics.active_streams.inc()
    session = StreamSession(websocket, state)
    try:
        await session.run()
    finally:
        state.streams.discard(task)
        state.metrics.active_streams.dec()
        log.debug("stream %s ended", session.id)
