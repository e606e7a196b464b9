"""``itmstream serve``: run the app under uvicorn on the configured (or given) address."""

import uvicorn

from service.app import create_app
from service.config import get_settings


def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the service until interrupted (SIGINT/SIGTERM trigger the graceful drain).

    Parameters
    ----------
    host, port : optional
        Override ``ITM_HOST`` / ``ITM_PORT``.
    """
    settings = get_settings()
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=settings.log_level.lower(),
        ws="websockets-sansio",  # the legacy websockets protocol is deprecated upstream
        ws_max_size=64 * 1024 * 1024,
        # Raw frames do not deflate well and zlib costs ~100 ms per 720p frame: never negotiate it.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=30,
    )
