"""``GET /``, ``GET /static/{name}`` and ``GET /demo/defaults``: the browser demo.

The page (upload, progress, download; a before/after still preview with an exposure slider and a light
histogram; a live stream panel) is plain HTML, CSS and JavaScript with no build step. Apart from the
defaults it preselects, it talks only to the public API (``/v1/operators``, ``/v1/jobs``, ``/v1/images``,
``/v1/stream``), so it doubles as a reference browser client. Files are served from a fixed allow-list, never
from a path taken from the request. They are read on first use, not at import, so an install without them (a
wheel built without the package data) still serves the API and answers 404 here with the reason.
"""

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response

from service.api.deps import StateDep
from service.api.problems import NotFoundError

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page loads nothing from other origins; inline scripts and styles are not used either.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

router = APIRouter(tags=["web"], include_in_schema=False)


@cache
def _assets() -> dict[str, tuple[bytes, str]]:
    """Every shipped file by name (empty when the package was installed without them)."""
    if not STATIC_DIR.is_dir():
        return {}
    return {
        path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(STATIC_DIR.iterdir())
        if path.suffix in MEDIA_TYPES
    }


def _asset(name: str) -> tuple[bytes, str]:
    """One shipped file.

    Raises
    ------
    NotFoundError
        If it does not exist, naming the likely packaging cause when no file is installed at all.
    """
    assets = _assets()
    if not assets:
        raise NotFoundError(f"demo files are not installed ({STATIC_DIR} is missing or empty)")
    found = assets.get(name)
    if found is None:
        raise NotFoundError(f"static file '{name}' does not exist")
    return found


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    """The demo page.

    Raises
    ------
    NotFoundError
        If the demo files are not installed.
    """
    body, _ = _asset("index.html")
    return HTMLResponse(body, headers=HEADERS)


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    """One of the page's static files.

    Raises
    ------
    NotFoundError
        If ``name`` is not one of the shipped files.
    """
    if name == "index.html":  # one address per document: the page lives at /
        raise NotFoundError(f"static file '{name}' does not exist")
    body, media_type = _asset(name)
    return Response(body, media_type=media_type, headers=HEADERS)


@router.get("/demo/defaults")
async def defaults(state: StateDep) -> JSONResponse:
    """What the server uses when a request names no operator, mode or peak, so the page preselects it.

    Open like the page itself: it tells nothing a client could not learn from a job created without options,
    and ``auth`` lets the page say a key is needed before the first request fails.
    """
    settings = state.settings
    body = {
        "operator": settings.default_operator,
        "mode": str(settings.default_mode),
        "peak_nits": settings.default_peak_nits,
        "auth": settings.auth_enabled,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
