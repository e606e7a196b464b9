"""Arbitrary request paths and methods over a real socket: outside the OpenAPI document, where schemathesis
does not go (unknown routes, the demo's ``/static/{name}``, path traversal, odd methods).

Every answer below 500, every error a problem document, nothing served from outside the shipped files, and
the ``route`` label of ``itm_requests_total`` confined to route templates (no label per path: bounded).
"""

import re
from urllib.parse import quote

import httpx
from hypothesis import example, given
from hypothesis import strategies as st

from service.web.routes import STATIC_DIR
from tests.fuzz.openapi import assert_problem, document
from tests.service.conftest import LiveServer

SEGMENT = st.text(st.characters(codec="utf-8", exclude_characters="/"), max_size=12) | st.sampled_from(
    ["..", ".", "%2e%2e", "static", "v1", "jobs", "index.html", "app.js", "~", ""]
)
PATHS = st.lists(SEGMENT, max_size=5).map(lambda parts: "/" + "/".join(quote(p, safe="%.~") for p in parts))
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
SHIPPED = {p.name for p in STATIC_DIR.iterdir()} if STATIC_DIR.is_dir() else set()


@given(path=PATHS, method=METHODS)
@example(path="/static/..%2F..%2Fpyproject.toml", method="GET")
@example(path="/static/%2e%2e%2fconfig.py", method="GET")
@example(path="/static/..", method="GET")
@example(path="/v1/jobs/..%2F..%2Fjobs.sqlite3/result", method="GET")
def test_any_path_is_answered_without_a_server_error(fuzz_server: LiveServer, path: str, method: str) -> None:
    response = httpx.request(method, fuzz_server.url + path, timeout=30)
    assert response.status_code < 500, (path, response.text)
    if response.status_code >= 400 and method != "HEAD":
        assert_problem(response.status_code, response.headers["content-type"], response.content)
    served = response.url.path  # after the client's own dot-segment removal (RFC 3986 clause 5.2.4)
    if served.startswith("/static/") and response.status_code == 200:
        assert served.removeprefix("/static/") in SHIPPED, path


def test_the_route_label_is_a_template_never_a_path(fuzz_server: LiveServer) -> None:
    """Runs after the property above (same server): whatever paths came, labels stay a small closed set."""
    httpx.get(f"{fuzz_server.url}/no/such/{'x' * 40}", timeout=30)
    text = httpx.get(f"{fuzz_server.url}/metrics", timeout=30).text
    routes = set(re.findall(r'itm_requests_total\{[^}]*route="([^"]*)"', text))
    fixed = {*document()["paths"], "/", "/openapi.json", "unmatched"}
    literal = {route for route in routes if route not in fixed and "{" not in route}
    assert routes and not literal, literal
