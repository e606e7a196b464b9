"""Joining or starting Ray (``--ray auto``), without a cluster: Ray's own calls are replaced by fakes."""

import threading
import time
from typing import Any

import pytest

from service.errors import EngineError
from service.scaleout import cluster

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
HEAD = "ray://head:10001"


@pytest.fixture(autouse=True)
def never_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a process that has joined no cluster (connect() remembers the last one)."""
    monkeypatch.setattr(cluster, "_joined", None)


@pytest.fixture
def inits(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every ``ray.init`` call (none is made for real)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("Context", (), {"gcs_address": "x"})())
    return calls


def test_auto_refuses_to_start_a_ray_that_listens_beyond_loopback(monkeypatch, inits):
    monkeypatch.setattr(cluster, "_running_here", lambda: False)
    monkeypatch.setattr(cluster, "only_loopback", lambda: False)
    with pytest.raises(EngineError, match=r"every network interface; run inside a private network namespace"):
        cluster.connect(cluster.LOCAL)
    assert inits == []


def test_auto_starts_a_ray_on_loopback_in_a_private_namespace(monkeypatch, inits):
    import os

    monkeypatch.setattr(cluster, "_running_here", lambda: False)
    monkeypatch.setattr(cluster, "only_loopback", lambda: True)
    monkeypatch.setenv("RAY_AUTH_MODE", "")
    monkeypatch.delenv("RAY_AUTH_MODE")  # restored (unset) after the test
    cluster.connect(cluster.LOCAL)
    (call,) = inits
    assert call["address"] is None and call["_node_ip_address"] == "127.0.0.1"
    assert os.environ["RAY_AUTH_MODE"] == "disabled"  # no token saved in ~/.ray for later clusters to trip on


@pytest.mark.parametrize("loopback", [True, False])
def test_auto_joins_the_ray_running_here_wherever_it_listens(monkeypatch, inits, loopback):
    monkeypatch.setattr(cluster, "_running_here", lambda: True)
    monkeypatch.setattr(cluster, "only_loopback", lambda: loopback)
    cluster.connect(cluster.LOCAL)
    (call,) = inits
    assert call["address"] is None and "_node_ip_address" not in call  # Ray's own address for its nodes


def test_an_address_is_joined_as_given(monkeypatch, inits):
    monkeypatch.setattr(cluster, "only_loopback", lambda: False)
    cluster.connect("127.0.0.1:6390")
    assert [call["address"] for call in inits] == ["127.0.0.1:6390"]


@pytest.mark.parametrize("connected_before", [False, True])
def test_the_cli_leaves_ray_at_the_end(monkeypatch, tmp_path, connected_before):
    """``convert --ray ADDRESS`` leaves Ray (stopping a Ray that ``auto`` started), also on failure."""
    from service.cli import main

    left: list[bool] = []
    monkeypatch.setattr(cluster, "disconnect", lambda: left.append(True))
    monkeypatch.setattr(cluster, "connect", lambda address: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: connected_before)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    assert main(["convert", str(bad), str(tmp_path / "out.mp4"), "-o", "bt2408", "--ray", "auto", "-q"]) != 0
    assert left == ([] if connected_before else [True])  # a caller's own connection (main in tests) stays


def test_a_ray_client_server_that_fails_to_start_names_the_head_setting(monkeypatch):
    """The head's Ray Client server lost this client's server (ray-project/ray#63202): say how to start it."""
    server = (
        "Initialization failure from server:\nTraceback (most recent call last):\n  ...\nRuntimeError: "
        "Starting Ray client server failed. See ray_client_server_23000.err for detailed logs."
    )

    def init(**kwargs: Any) -> None:
        raise ConnectionAbortedError(server)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(EngineError) as caught:
        cluster.connect("ray://head:10001")
    message = str(caught.value)
    assert message.startswith(
        "cannot join the Ray cluster at 'ray://head:10001': RuntimeError: Starting Ray client server failed. "
        "See ray_client_server_23000.err for detailed logs."
    )
    assert "start the head with GRPC_ENABLE_FORK_SUPPORT=0 in its environment" in message
    assert dict(cluster.RAY_CLIENT_HEAD_ENV) == {"GRPC_ENABLE_FORK_SUPPORT": "0"}


def test_the_charts_ray_head_runs_in_the_ray_client_environment():
    """The Helm chart reaches its head through Ray Client, so the head container has RAY_CLIENT_HEAD_ENV."""
    import re
    from pathlib import Path

    template = Path(__file__).resolve().parents[3] / "deploy/helm/itmstream/templates/raycluster.yaml"
    text = template.read_text()
    head = text[text.index("headGroupSpec:") : text.index("workerGroupSpecs:")]
    for name, value in cluster.RAY_CLIENT_HEAD_ENV.items():
        assert re.search(rf'- name: {name}\n\s+value: "{value}"', head), f"{name}={value} not on the head"


class FakeRayClient:
    """Ray 2.60's Ray Client as :func:`cluster.connect` sees it (ray/util/client/__init__.py, worker.py).

    ``client`` is None (never connected, or dropped by ``ray.shutdown()``), "live", or "lost": a head gone for
    longer than the reconnect grace period leaves a closed client behind, which reports Ray not initialised
    while ``ray.init`` refuses to replace it. ``ray.init`` takes a while, as a real connection does.
    """

    def __init__(self) -> None:
        self.client: str | None = None
        self.head_up = True
        self.inits = 0
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return self.client == "live"

    def init(self, **kwargs: Any) -> None:
        if self.client == "live":
            raise RuntimeError("Ray Client is already connected")
        if self.client == "lost":
            raise Exception("ray.init() called, but ray client is already connected")  # sic: a bare Exception
        time.sleep(0.05)
        if not self.head_up:
            raise ConnectionError("ray client connection timeout")  # and the failed client is dropped
        self.inits += 1
        self.client = "live"

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.client = None

    def lose_head(self) -> None:
        self.client, self.head_up = "lost", False


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeRayClient:
    fake = FakeRayClient()
    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    return fake


def test_jobs_that_start_together_join_ray_once(client):
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def job() -> None:
        start.wait()
        try:
            cluster.connect(HEAD)
        except BaseException as exc:  # collected: an error in a thread would otherwise go unseen
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and client.inits == 1


def test_a_lost_head_is_joined_again_by_the_next_job(client, caplog):
    cluster.connect(HEAD)
    client.lose_head()
    with pytest.raises(Exception, match="already connected"):  # what ray.init alone would do, every time
        ray.init(address=HEAD)
    client.head_up = True  # KubeRay restarted the head
    cluster.connect(HEAD)
    assert (client.inits, client.shutdowns, client.client) == (2, 1, "live")
    assert f"lost the Ray cluster at '{HEAD}'; joining it again" in caplog.text


def test_while_the_head_is_gone_each_job_fails_and_the_first_after_it_joins(client):
    cluster.connect(HEAD)
    client.lose_head()
    for _ in range(2):
        with pytest.raises(EngineError, match=f"cannot join the Ray cluster at '{HEAD}': ray client conn"):
            cluster.connect(HEAD)
    client.head_up = True
    cluster.connect(HEAD)
    assert (client.inits, client.shutdowns, client.client) == (2, 1, "live")


def test_disconnect_drops_a_lost_connection_too(client):
    cluster.connect(HEAD)
    client.lose_head()
    cluster.disconnect()
    client.head_up = True
    cluster.connect(HEAD)  # no "lost" warning: the caller left on purpose
    assert (client.inits, client.shutdowns) == (2, 1)
