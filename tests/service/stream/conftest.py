"""A real uvicorn server on an ephemeral loopback port, for WebSocket tests over real sockets."""

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.config import Settings
from service.server import DrainingServer, config_for


@dataclass
class LiveServer:
    url: str
    ws_url: str
    settings: Settings
    registry: CollectorRegistry
    server: uvicorn.Server
    thread: threading.Thread

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def start_server(tmp_path: Path, **overrides: Any) -> LiveServer:
    converter = overrides.pop("converter", None)
    overrides.setdefault("default_operator", "bt2446a")  # classical: fast to warm, exact references
    settings = Settings(data_dir=tmp_path / "data", workers=2, port=0, **overrides)
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, converter=converter)
    server = DrainingServer(config_for(app, "127.0.0.1", 0, "warning"), app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", settings, registry, server, thread
    )
    return live


@pytest.fixture
def live_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def factory(**overrides: Any) -> LiveServer:
        server = start_server(tmp_path, **overrides)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def live(live_factory: Callable[..., LiveServer]) -> LiveServer:
    server = live_factory()
    import httpx

    server.wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)
    return server
