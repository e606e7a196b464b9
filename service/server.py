"""``itmstream serve``: run the app under uvicorn on the configured (or given) address."""

import asyncio
import contextlib
import socket

import uvicorn
from fastapi import FastAPI

from service.app import create_app, drain_streams
from service.config import get_settings


class DrainingServer(uvicorn.Server):
    """uvicorn, but open streams drain their in-flight frames before connections are closed."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float = 10.0) -> None:
        super().__init__(config)
        self.itm_app = app
        self.drain_timeout_s = drain_timeout_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain streams (they close with 1001), then shut down as uvicorn does."""
        with contextlib.suppress(TimeoutError):
            drain = drain_streams(self.itm_app, self.drain_timeout_s)
            await asyncio.wait_for(drain, self.drain_timeout_s + 1)
        await super().shutdown(sockets)


def config_for(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration the service needs (WebSocket implementation and limits)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="websockets-sansio",  # the legacy websockets protocol is deprecated upstream
        ws_max_size=64 * 1024 * 1024,
        # Raw frames do not deflate well and zlib costs ~100 ms per 720p frame: never negotiate it.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=30,
        lifespan="on",
    )


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the service until interrupted (SIGINT/SIGTERM trigger the graceful drain).

    Parameters
    ----------
    host, port : optional
        Override ``ITM_HOST`` / ``ITM_PORT``.
    """
    settings = get_settings()
    app = create_app(settings)
    config = config_for(
        app, host or settings.host, settings.port if port is None else port, settings.log_level.lower()
    )
    DrainingServer(config, app).run()
