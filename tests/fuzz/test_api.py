"""schemathesis against the OpenAPI document of a running server, over a real socket.

Every documented operation gets generated requests, valid (positive) and schema-violating (negative), and
each response must: not be a 5xx, have a documented status code and content type, match the documented body
schema and headers, refuse schema-violating input with a 4xx, and carry RFC 9457 problem details when it is
an error. The server (tests/fuzz/conftest.py) runs ``bt2408`` with a 64 KiB upload limit, so generated
uploads are cheap and the 413 path is reachable; random bytes never probe as video, so no job converts.
"""

import httpx
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.openapi import SCHEMA, assert_problem, document
from tests.service.conftest import LiveServer


def test_the_running_server_serves_the_fuzzed_document(fuzz_server: LiveServer) -> None:
    served = httpx.get(f"{fuzz_server.url}/openapi.json").json()
    assert served == document()


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every 4xx/5xx carries RFC 9457 problem details."""
    if response.status_code >= 400:
        assert_problem(response.status_code, response.headers.get("content-type", [""])[0], response.content)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    problem_details,
]


@SCHEMA.parametrize()
def test_every_operation_conforms_to_its_schema(case: schemathesis.Case, fuzz_server: LiveServer) -> None:
    case.call_and_validate(base_url=fuzz_server.url, checks=CHECKS, timeout=30)
