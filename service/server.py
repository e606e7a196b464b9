"""``itmstream serve``: run the app under uvicorn on the configured (or given) address.

Before anything is loaded, :func:`auth_mode` decides whether the address may be served as configured: a
non-loopback address needs ``ITM_API_KEYS`` or an explicit ``ITM_ALLOW_ANONYMOUS=true``, so that a container
or pod published on a network is never open to anyone by accident. Probes, ``/metrics`` and the demo page
stay open in every mode (the bearer check guards ``/v1/*`` only).
"""

import asyncio
import contextlib
import enum
import ipaddress
import logging
import socket

import uvicorn
from fastapi import FastAPI

from service.app import STREAM_DRAIN_TIMEOUT_S, create_app, drain_streams
from service.config import Settings, get_settings
from service.errors import ItmError

log = logging.getLogger(__name__)


class AuthMode(enum.StrEnum):
    """How ``/v1/*`` is protected; the start-up log states it with :data:`AUTH_MODE_DETAIL`."""

    KEYS = "auth on"
    LOOPBACK = "anonymous on loopback"
    CHOSEN = "anonymous by choice"


AUTH_MODE_DETAIL = {
    AuthMode.KEYS: "/v1/* needs a bearer key from ITM_API_KEYS",
    AuthMode.LOOPBACK: "no ITM_API_KEYS; the address is loopback, so only this machine can connect",
    AuthMode.CHOSEN: "no ITM_API_KEYS and ITM_ALLOW_ANONYMOUS=true: anyone who can connect may use /v1/*",
}


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the port on this machine (``localhost`` or a loopback IP).

    Any other name, and the empty or wildcard address, counts as exposed: a name may resolve to anything.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_mode(settings: Settings, host: str) -> AuthMode:
    """The auth mode serving ``host`` with ``settings`` means.

    Raises
    ------
    ItmError
        If ``host`` is not loopback, no API key is set and anonymous access was not chosen explicitly; the
        message names both ways out.
    """
    if settings.auth_enabled:
        return AuthMode.KEYS
    if is_loopback(host):
        return AuthMode.LOOPBACK
    if settings.allow_anonymous:
        return AuthMode.CHOSEN
    raise ItmError(
        f"refusing to serve on '{host}' without authentication: anyone who can reach it could upload videos "
        "and open streams. Set ITM_API_KEYS=<key>[,<key>...] to require a bearer key, or set "
        "ITM_ALLOW_ANONYMOUS=true to serve anonymously on purpose (or bind ITM_HOST=127.0.0.1)"
    )


class DrainingServer(uvicorn.Server):
    """uvicorn, but open streams drain their in-flight frames before connections are closed."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        drain_timeout_s: float = STREAM_DRAIN_TIMEOUT_S,
        auth: AuthMode | None = None,
    ) -> None:
        super().__init__(config)
        self.itm_app = app
        self.drain_timeout_s = drain_timeout_s
        self.auth = auth

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then log the auth mode (after the lifespan has configured logging)."""
        await super().startup(sockets)
        if self.started and self.auth is not None:
            log.info(
                "%s: %s (probes, /metrics and the demo page are always open)",
                self.auth.value,
                AUTH_MODE_DETAIL[self.auth],
            )

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

    Raises
    ------
    ItmError
        If the address is not loopback and neither ``ITM_API_KEYS`` nor ``ITM_ALLOW_ANONYMOUS=true`` is set
        (checked before anything is loaded or bound).
    """
    settings = get_settings()
    host = settings.host if host is None else host
    auth = auth_mode(settings, host)
    app = create_app(settings)
    config = config_for(app, host, settings.port if port is None else port, settings.log_level.lower())
    DrainingServer(config, app, auth=auth).run()
