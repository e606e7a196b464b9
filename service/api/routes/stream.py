"""``/v1/stream``: the WebSocket frame stream (docs/PROTOCOL.md)."""

import asyncio
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from service.api.auth import is_authorised
from service.api.deps import get_state
from service.stream.protocol import CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TRY_AGAIN
from service.stream.session import StreamSession, TransportClosedError

log = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])


class WebSocketTransport:
    """Starlette's :class:`WebSocket` as the :class:`~service.stream.session.Transport` a session runs on.

    The session knows nothing of ASGI or Starlette: a disconnect (the ``websocket.disconnect`` message, or
    Starlette's :class:`WebSocketDisconnect` from a send) becomes :class:`TransportClosedError`.
    """

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        """The next message's text or bytes (``None`` if it carries neither).

        Raises
        ------
        TransportClosedError
            If the peer went away.
        """
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise TransportClosedError
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes | None = message.get("bytes")
        return data

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Raises
        ------
        TransportClosedError
            If the peer went away.
        """
        try:
            await self.websocket.send_text(data)
        except WebSocketDisconnect as exc:
            raise TransportClosedError from exc

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message.

        Raises
        ------
        TransportClosedError
            If the peer went away.
        """
        try:
            await self.websocket.send_bytes(data)
        except WebSocketDisconnect as exc:
            raise TransportClosedError from exc

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame.

        Raises
        ------
        TransportClosedError
            If the peer went away.
        """
        try:
            await self.websocket.close(code, reason)
        except WebSocketDisconnect as exc:
            raise TransportClosedError from exc


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
    session = StreamSession(
        WebSocketTransport(websocket), state.settings, state.metrics, state.batcher, state.shutting_down
    )
    try:
        await session.run()
    finally:
        state.streams.discard(task)
        state.metrics.active_streams.dec()
        log.debug("stream %s ended", session.id)
