"""Hypothesis profiles for the fuzz suite, and the live server the API fuzz tests talk to.

Profiles (pick with ``HYPOTHESIS_PROFILE``; ``fuzz`` is loaded by default):

* ``fuzz``: the CI budget. ``deadline=None`` because the first call of a Numba kernel compiles for seconds;
  no example database, so a CI run never depends on what an earlier run left in ``.hypothesis/``.
* ``fuzz-deep``: the same with 20x the examples, for a long local run after touching a parser or kernel.

No other test of the suite uses Hypothesis, so loading a profile here changes nothing outside tests/fuzz.
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.openapi import API_KEY
from tests.service.conftest import LiveServer, start_server

FUZZ_EXAMPLES = 50
"""Examples per property (and per API operation for schemathesis) in the ``fuzz`` profile."""

settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fuzz-deep", parent=settings.get_profile("fuzz"), max_examples=20 * FUZZ_EXAMPLES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz"))

UPLOAD_LIMIT_BYTES = 64 * 1024
"""Small, so that no generated body is ever large and the 413 path is reachable."""


def serve(tmp_path_factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[LiveServer]:
    """A real uvicorn server (``bt2408``: the cheapest operator to warm and run), ready before use."""
    import httpx

    server = start_server(
        tmp_path_factory.mktemp("fuzz-server"),
        default_operator="bt2408",
        upload_limit_bytes=UPLOAD_LIMIT_BYTES,
        max_width=256,
        max_height=256,
        max_duration_s=5,
        warmup_size=(16, 16),
        stream_idle_timeout_s=10.0,  # a stream the fuzzer leaves waiting ends (1001, a failure) soon
        **overrides,
    )
    try:
        server.wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200, timeout=60)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One open server for the whole run: only tests/fuzz uses it, and no test depends on another's jobs."""
    yield from serve(tmp_path_factory)


@pytest.fixture(scope="session")
def fuzz_server_with_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The same with bearer auth on (key :data:`API_KEY`)."""
    yield from serve(tmp_path_factory, api_keys=(API_KEY,))
