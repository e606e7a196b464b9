"""Bearer-token auth for ``/v1/*``: on exactly when ``ITM_API_KEYS`` lists at least one key.

Keys are optional only on loopback: ``itmstream serve`` refuses any other address without them unless
``ITM_ALLOW_ANONYMOUS=true`` (:func:`service.server.auth_mode`). Probes, ``/metrics`` and the demo page never
ask for a key.
"""

import hmac

from starlette.requests import HTTPConnection

from service.api.problems import UnauthorizedError
from service.config import Settings


def token_of(conn: HTTPConnection) -> str | None:
    """The bearer token of a request or WebSocket handshake.

    Browsers cannot set headers on a WebSocket, so ``?access_token=`` is accepted too (RFC 6750 clause 2.3).
    """
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return conn.query_params.get("access_token")


def is_authorised(settings: Settings, conn: HTTPConnection) -> bool:
    """True when auth is off or the token matches a configured key (constant-time compare)."""
    if not settings.auth_enabled:
        return True
    token = token_of(conn)
    if token is None:
        return False
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in settings.api_keys)


def check_auth(settings: Settings, conn: HTTPConnection) -> None:
    """Raise unless the connection may use the API.

    Raises
    ------
    UnauthorizedError
        If auth is on and the token is missing or wrong.
    """
    if not is_authorised(settings, conn):
        raise UnauthorizedError("a valid 'Authorization: Bearer <key>' header is required")
