"""The OpenAPI document the fuzz tests generate from and validate against, and the problem+json check."""

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import schemathesis

API_KEY = "fuzz-key"
"""The bearer key of the fuzz server that has auth on."""


@cache
def document() -> dict[str, Any]:
    """The document of an app built like the fuzz server (the running server is checked to serve it).

    Built at collection, before any server exists: schemathesis' lazy ``from_fixture`` loader, which would
    read it from the live server, fails on pytest 9.2 (it reads ``Function._nodeid``, which 9.2 removed).
    """
    from service.app import create_app
    from service.config import Settings

    app = create_app(Settings(data_dir=Path(tempfile.gettempdir()) / "itm-fuzz-schema"))
    return json.loads(json.dumps(app.openapi()))


SCHEMA = schemathesis.openapi.from_dict(document())


def assert_problem(status: int, content_type: str, body: bytes) -> None:
    """An error response is ``application/problem+json`` with its own ``status`` (RFC 9457 clause 3)."""
    media = content_type.split(";")[0].strip()
    assert media == "application/problem+json", f"{status} sent as {media!r}"
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status, problem
    assert isinstance(problem["title"], str) and isinstance(problem["detail"], str) and problem["detail"]
