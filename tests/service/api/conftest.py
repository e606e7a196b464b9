"""TestClient fixtures (apps built per test with their own registry and data dir)."""

import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.config import Settings

with warnings.catch_warnings():
    # Starlette warns at import that its TestClient will move to httpx2; not ours to fix.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.02)


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[..., tuple[TestClient, CollectorRegistry]]]:
    clients: list[TestClient] = []

    def factory(ready: bool = True, **overrides: Any) -> tuple[TestClient, CollectorRegistry]:
        registry = CollectorRegistry()
        overrides.setdefault("default_operator", "bt2446a")  # classical: fast to warm, exact references
        settings = Settings(data_dir=tmp_path / "data", workers=1, **overrides)
        client = TestClient(create_app(settings, registry=registry))
        client.__enter__()
        clients.append(client)
        if ready:
            wait_ready(client)
        return client, registry

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: Callable[..., tuple[TestClient, CollectorRegistry]]) -> TestClient:
    return client_factory()[0]
