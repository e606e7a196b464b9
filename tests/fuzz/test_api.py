"""schemathesis against the OpenAPI document of a running server, over a real socket.

Every documented operation gets generated requests, valid (positive) and schema-violating (negative), and
each response must: not be a 5xx, have a documented status code and content type, match the documented body
schema and headers, refuse schema-violating input with a 4xx, and carry RFC 9457 problem details when it is
an error. The server (tests/fuzz/conftest.py) runs ``bt2408`` with a 64 KiB upload limit, so generated
uploads are cheap and the 413 path is reachable; random bytes never probe as video, so no job converts.
"""

import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import LiveServer

API_EXAMPLES = 25
"""Generated requests per operation and generation mode; 8 operations keep the run within ~20 s."""


def generation_schema() -> dict[str, Any]:
    """The document of an app built with the fuzz server's settings (collection happens before any server
    exists, and schemathesis' lazy fixture loader does not run on pytest 9.2); the first test checks that the
    running server serves exactly this document."""
    from service.app import create_app
    from service.config import Settings

    return create_app(Settings(data_dir=Path(tempfile.gettempdir()) / "itm-fuzz-schema")).openapi()


schema = schemathesis.openapi.from_dict(generation_schema())


def test_the_running_server_serves_the_fuzzed_document(fuzz_server: LiveServer) -> None:
    served = httpx.get(f"{fuzz_server.url}/openapi.json").json()
    assert served == json.loads(json.dumps(generation_schema()))


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every 4xx/5xx is ``application/problem+json`` with its own ``status`` (RFC 9457 clause 3)."""
    if response.status_code < 400:
        return
    media = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media == "application/problem+json", f"{response.status_code} sent as {media!r}"
    body: dict[str, Any] = json.loads(response.content)
    assert body["status"] == response.status_code, body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str) and body["detail"], body


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    problem_details,
]


@schema.parametrize()
@settings(max_examples=API_EXAMPLES)
def test_every_operation_conforms_to_its_schema(case: schemathesis.Case, fuzz_server: LiveServer) -> None:
    case.call_and_validate(base_url=fuzz_server.url, checks=CHECKS, timeout=30)
