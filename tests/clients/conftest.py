"""A real itmstream server on a loopback ephemeral port for the client tests.

Reuses the service tests' uvicorn-in-a-thread server (tests/service/conftest.py) and the synthetic clip
maker (tests/service/conftest.py) rather than copying them; one server per module keeps the suite fast.
"""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` without `python -m` does not put the repo root on sys.path
    sys.path.insert(0, str(ROOT))

from tests.service.conftest import LiveServer, make_clip, start_server  # noqa: E402


def _ready(server: LiveServer) -> LiveServer:
    server.wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200, timeout=120)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A shared server without auth (jobs run the real pipeline on tiny clips)."""
    live = _ready(start_server(tmp_path_factory.mktemp("server")))
    yield live
    live.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Servers with custom settings (auth, limits), stopped after the test."""
    started: list[LiveServer] = []

    def factory(**overrides: Any) -> LiveServer:
        live = _ready(start_server(tmp_path, **overrides))
        started.append(live)
        return live

    yield factory
    for live in started:
        live.stop()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 12-frame 64x48 H.264 SDR clip."""
    return make_clip(tmp_path / "clip.mp4")
