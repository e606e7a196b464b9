"""schemathesis against the OpenAPI document of a running server, over a real socket.

Every documented operation gets generated requests, valid (positive) and schema-violating (negative), and
each response must: not be a 5xx, have a documented status code and content type, match the documented body
schema and headers, refuse schema-violating input with a 4xx, and carry RFC 9457 problem details when it is
an error. The server (tests/fuzz/conftest.py) runs ``bt2408`` with a 64 KiB upload limit, so generated
uploads are cheap and the 413 path is reachable; random bytes never probe as video, so no job converts.
"""

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.openapi import API_KEY, SCHEMA, assert_problem, document
from tests.service.conftest import LiveServer


def test_the_running_server_serves_the_fuzzed_document(fuzz_server: LiveServer) -> None:
    """Generation uses the app factory's document; it must be the one the server really serves."""
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


OPERATIONS = [(path, method) for path, item in document()["paths"].items() for method in item]


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
@pytest.mark.parametrize("key", [None, "wrong", API_KEY], ids=["no key", "wrong key", "key"])
def test_auth_answers_are_documented_problems(
    fuzz_server_with_keys: LiveServer, path: str, method: str, key: str | None
) -> None:
    """With keys configured, /v1 wants a bearer key: 401 + ``WWW-Authenticate: Bearer`` (RFC 9110 clause
    11.6.1), documented; probes and metrics never do. The request itself is empty: auth is checked first."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    url = fuzz_server_with_keys.url + path.replace("{job_id}", "0123456789abcdef")
    response = httpx.request(method, url, headers=headers, timeout=30)
    SCHEMA[path][method.upper()].validate_response(response)
    protected = path.startswith("/v1/")
    assert ("security" in document()["paths"][path][method]) == protected, (
        "auth is documented where it applies"
    )
    refused = protected and key != API_KEY
    assert (response.status_code == 401) == refused, (response.status_code, response.text)
    if refused:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_problem(401, response.headers["content-type"], response.content)
