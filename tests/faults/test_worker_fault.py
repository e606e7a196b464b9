"""An operator that raises on one frame fails that frame's job or stream only, never its batch mates.

The faulty operator (:mod:`tests.faults.faulty_operator`) is loaded into the server through
``ITM_EXTRA_OPERATORS``. Batches are made large and slow to close (``max_batch_size`` 4, one worker, a long
queue delay) so the poison frame shares its batch with frames of the same stream, of other streams and of a
concurrent job: exactly the case where one bad frame used to fail every request in the batch. Whether a
given batch forms depends on scheduling, so a second test checks the batcher alone with a batch that
certainly holds the poison frame and three good ones.
"""

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from clients import Stream, StreamClosedError, StreamOptions, StreamResult
from service.app import create_app
from service.colour.description import ColourDescription
from service.config import Settings
from service.errors import EngineError
from service.inference.batcher import DynamicBatcher
from service.inference.pool import WorkerPool
from service.inference.types import BatcherConfig, BatchKey, FrameResult, OperatorSpec
from service.metrics import build_metrics
from service.operators import available_operators
from service.operators.registry import register_operator, unregister_operator
from tests.faults.conftest import ServerProcess, assert_valid_hdr10, clip_of, leftovers, submit, wait_final
from tests.faults.faulty_operator import NAME, PATH, POISON_RGB

pytestmark = pytest.mark.timeout(180)

W, H = 64, 48
FRAMES = 16
POISON_SEQ = 1
"""The poison frame follows one good frame of its own stream, which is in the same batch and must survive."""


def _gradient(i: int) -> np.ndarray:
    image = np.empty((H, W, 3), np.uint8)
    image[..., 0] = (np.linspace(0, 255, W)[None, :] + 8 * i) % 256
    image[..., 1] = np.linspace(0, 255, H)[:, None]
    image[..., 2] = 128
    return image


POISON = np.broadcast_to(np.array(POISON_RGB, np.uint8), (H, W, 3)).copy()
OPTIONS = StreamOptions(W, H, output="rgb10a2", mode="lossless", credits=4, operator=NAME)


def _good_stream(url: str) -> list[int]:
    with Stream.connect(url, OPTIONS) as stream:
        events = list(stream.run([_gradient(i) for i in range(FRAMES)]))
    return [e.seq for e in events if isinstance(e, StreamResult)]


def _poison_stream(url: str) -> tuple[list[int], StreamClosedError]:
    frames = [POISON if i == POISON_SEQ else _gradient(i) for i in range(FRAMES)]
    seqs: list[int] = []
    with Stream.connect(url, OPTIONS) as stream:
        try:
            for event in stream.run(frames):
                if isinstance(event, StreamResult):
                    seqs.append(event.seq)
        except StreamClosedError as exc:
            return seqs, exc
    raise AssertionError(f"the poisoned stream ended normally with results {seqs}")


def test_poison_frame_fails_only_its_own_job_and_stream(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory(
        extra_operators=PATH, workers=1, max_batch_size=4, max_queue_delay_ms=200, job_concurrency=2
    )
    good_clip = clip_of(tmp_path / "good.mp4", (_gradient(i) for i in range(FRAMES)))
    bad_clip = clip_of(tmp_path / "bad.mp4", (POISON if i == 5 else _gradient(i) for i in range(FRAMES)))
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(6) as pool:
        bad_job = submit(client, bad_clip, operator=NAME)
        good_job = submit(client, good_clip, operator=NAME)
        poisoned = pool.submit(_poison_stream, server.url)
        good = [pool.submit(_good_stream, server.url) for _ in range(3)]

        seqs, closed = poisoned.result(120)
        assert closed.code == 1011, closed
        assert f"frame {POISON_SEQ}" in closed.reason and "injected fault" in closed.reason, closed
        assert seqs == list(range(POISON_SEQ)), "the poison frame's batch mate from its own stream failed too"
        for future in good:
            assert future.result(120) == list(range(FRAMES))

        failed = wait_final(client, bad_job)
        assert failed["state"] == "failed", failed
        assert "injected fault" in failed["error"], failed
        succeeded = wait_final(client, good_job)
        assert succeeded["state"] == "succeeded", succeeded
        result = tmp_path / "good_hdr10.mp4"
        result.write_bytes(client.get(succeeded["result_url"]).content)
        assert_valid_hdr10(result, FRAMES)

        assert server.metric("itm_active_streams") == 0
        with Stream.connect(server.url, OPTIONS) as stream:  # the batcher and workers are still healthy
            assert [e.seq for e in stream.run([_gradient(0)] * 3) if isinstance(e, StreamResult)] == [0, 1, 2]
    assert leftovers(server.data_dir) == []


@pytest.fixture
def faulty_registered() -> Iterator[None]:
    """The faulty operator in this process's registry, through the same call ``ITM_EXTRA_OPERATORS`` uses."""
    register_operator(PATH)
    try:
        yield
    finally:
        unregister_operator(NAME)


@pytest.mark.usefixtures("faulty_registered")
def test_batcher_fails_only_the_poison_request_of_a_full_batch() -> None:
    """Deterministic form of the above: four frames that certainly form one batch, the second one poison."""
    metrics = build_metrics(CollectorRegistry(), 4)
    pool = WorkerPool(1)
    key = BatchKey(OperatorSpec.of(NAME, peak_nits=1000.0), H, W, ColourDescription.still(), "rgb10a2")
    frames = [_gradient(0), POISON, _gradient(2), _gradient(3)]

    async def main() -> list[FrameResult | BaseException]:
        config = BatcherConfig(max_batch_size=4, max_queue_delay_s=60.0, queue_size=8, workers=1)
        batcher = DynamicBatcher(config, pool, metrics)
        futures = [batcher.submit(f, key) for f in frames]  # queued before the owner task can take any
        batcher.start()
        try:
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            await batcher.stop(drain=False)

    try:
        outcomes = asyncio.run(main())
    finally:
        pool.shutdown()
    assert metrics.registry.get_sample_value("itm_batches_total", {"reason": "full"}) == 1
    assert isinstance(outcomes[1], EngineError) and "injected fault" in str(outcomes[1]), outcomes[1]
    for i in (0, 2, 3):
        result = outcomes[i]
        assert isinstance(result, FrameResult), result
        assert result.data.shape == (H, W)


def test_extra_operators_setting_registers_or_refuses_at_startup(tmp_path: Path) -> None:
    """``ITM_EXTRA_OPERATORS`` fails start-up on a bad path instead of at the first request naming it.

    Validating the settings only checks the paths; creating the app registers them.
    """
    with pytest.raises(ValidationError, match="cannot be imported"):
        Settings(extra_operators="no_such_module:Operator")
    with pytest.raises(ValidationError, match="built-in"):
        Settings(extra_operators="service.operators.classical:BT2408")
    with pytest.raises(ValidationError, match="not of the form"):
        Settings(extra_operators="tests.faults.faulty_operator")
    try:
        settings = Settings(  # repeats are no-ops
            data_dir=tmp_path, extra_operators=f"{PATH}, {PATH}", default_operator=NAME
        )
        assert settings.default_operator == NAME
        assert NAME not in [info.name for info in available_operators()], "validation registered it"
        create_app(settings)
        assert NAME in [info.name for info in available_operators()]
    finally:
        unregister_operator(NAME)
    assert NAME not in [info.name for info in available_operators()]
