"""Dynamic batcher: Triton closing rules, bounded queue, skipped cancelled frames, batch independence,
deadlines of queued frames, per-frame stage timings."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.colour.description import ColourDescription
from service.errors import DeadlineExceededError, OverloadedError
from service.inference.batcher import DynamicBatcher
from service.inference.pool import WorkerPool
from service.inference.types import BatcherConfig, BatchKey, OperatorSpec
from service.metrics import Metrics, build_metrics

H, W = 16, 24
pytestmark = pytest.mark.timeout(120)


def key(operator: str = "bt2446a", output: str = "nits", height: int = H, width: int = W) -> BatchKey:
    spec = OperatorSpec.of(operator, peak_nits=1000.0)
    return BatchKey(spec, height, width, ColourDescription.still(), output)  # type: ignore[arg-type]


def frame(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def run(
    body: Callable[[DynamicBatcher, Metrics], Awaitable[Any]],
    *,
    start: bool = True,
    workers: int = 1,
    **config: Any,
) -> tuple[Any, Metrics]:
    metrics = build_metrics(CollectorRegistry(), 8)
    pool = WorkerPool(workers)

    async def main() -> Any:
        batcher = DynamicBatcher(BatcherConfig(workers=workers, **config), pool, metrics)
        if start:
            batcher.start()
        try:
            return await body(batcher, metrics)
        finally:
            await batcher.stop(drain=False)

    try:
        return asyncio.run(main()), metrics
    finally:
        pool.shutdown()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_frame_alone_and_in_mixed_batch_gives_identical_output() -> None:
    target = frame(42)

    async def body(batcher: DynamicBatcher, metrics: Metrics) -> tuple[np.ndarray, list[np.ndarray]]:
        alone = (await batcher.submit(target, key())).data
        # Mixed batch: the same frame among different content, different positions.
        futures = [batcher.submit(frame(i) if i != 2 else target, key()) for i in range(4)]
        batch = [(await f).data for f in futures]
        return alone, batch

    (alone, batch), metrics = run(body, max_batch_size=4, max_queue_delay_s=0.05)
    np.testing.assert_array_equal(alone, batch[2])
    assert sample(metrics, "itm_batches_total", reason="full") == 1


@pytest.mark.parametrize("output", ["rgb10a2", "rgb48"])
def test_packed_output_independent_of_batch_mates(output: str) -> None:
    target = frame(7)

    async def body(batcher: DynamicBatcher, metrics: Metrics) -> tuple[np.ndarray, np.ndarray]:
        alone = (await batcher.submit(target, key("inverse_reinhard", output))).data
        mixed_key = key("inverse_reinhard", output)
        futures = [batcher.submit(frame(i) if i else target, mixed_key) for i in range(3)]
        return alone, (await futures[0]).data

    (alone, mixed), _ = run(body, max_batch_size=3, max_queue_delay_s=0.05)
    np.testing.assert_array_equal(alone, mixed)


def test_batch_closes_when_full() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> list[int]:
        futures = [batcher.submit(frame(i), key()) for i in range(6)]
        return [(await f).batch_size for f in futures]

    sizes, metrics = run(body, max_batch_size=3, max_queue_delay_s=60.0)
    assert sizes == [3, 3, 3, 3, 3, 3]
    assert sample(metrics, "itm_batches_total", reason="full") == 2
    assert sample(metrics, "itm_batch_size_sum") == 6


def test_partial_batch_closes_after_max_queue_delay() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> int:
        return (await batcher.submit(frame(0), key())).batch_size

    size, metrics = run(body, max_batch_size=8, max_queue_delay_s=0.01)
    assert size == 1
    assert sample(metrics, "itm_batches_total", reason="timeout") == 1
    assert sample(metrics, "itm_queue_wait_seconds_count") == 1


def test_frames_queued_while_worker_busy_form_one_batch() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> list[int]:
        # Owner not started: everything queues, as when all workers are busy; then it drains in full batches.
        futures = [batcher.submit(frame(i), key()) for i in range(4)]
        batcher.start()
        return [(await f).batch_size for f in futures]

    sizes, _ = run(body, start=False, max_batch_size=4, max_queue_delay_s=0.0)
    assert sizes == [4, 4, 4, 4]


def test_different_keys_never_share_a_batch() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> list[tuple[int, tuple[int, ...]]]:
        small = [batcher.submit(frame(i), key()) for i in range(2)]
        other = [batcher.submit(frame(i, 8, 8), key(height=8, width=8)) for i in range(2)]
        packed = [batcher.submit(frame(i), key(output="rgb10a2")) for i in range(2)]
        batcher.start()
        results = [await f for f in small + other + packed]
        return [(r.batch_size, r.data.shape) for r in results]

    out, metrics = run(body, start=False, max_batch_size=8, max_queue_delay_s=0.0)
    assert [size for size, _ in out] == [2] * 6
    assert [shape for _, shape in out] == [(H, W, 3)] * 2 + [(8, 8, 3)] * 2 + [(H, W)] * 2
    assert sample(metrics, "itm_batch_size_count") == 3


def test_queue_full_raises_overloaded() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> float:
        batcher.submit(frame(0), key())
        batcher.submit(frame(1), key())
        with pytest.raises(OverloadedError) as info:
            batcher.submit(frame(2), key())
        assert sample(metrics, "itm_queue_depth") == 2
        return info.value.retry_after_s

    retry, _ = run(body, start=False, queue_size=2, max_batch_size=2)
    assert retry > 0


def test_submit_wait_blocks_until_room() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> int:
        first = batcher.submit(frame(0), key())
        waiting = asyncio.ensure_future(batcher.submit_wait(frame(1), key()))
        await asyncio.sleep(0)
        assert not waiting.done()
        batcher.start()
        second = await waiting
        await first
        return (await second).batch_size

    size, _ = run(body, start=False, queue_size=1, max_batch_size=1, max_queue_delay_s=0.0)
    assert size == 1


def test_cancelled_frames_are_skipped() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> int:
        futures = [batcher.submit(frame(i), key()) for i in range(3)]
        futures[1].cancel()
        batcher.start()
        sizes = [(await futures[0]).batch_size, (await futures[2]).batch_size]
        assert sizes == [2, 2]
        return batcher.depth

    depth, metrics = run(body, start=False, max_batch_size=8, max_queue_delay_s=0.0)
    assert depth == 0
    assert sample(metrics, "itm_batch_size_sum") == 2


def test_invalid_frame_fails_only_its_batch_with_value_error() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> np.ndarray:
        bad = batcher.submit(np.zeros((H, W, 4), np.uint8), key())
        with pytest.raises(ValueError):
            await bad
        return (await batcher.submit(frame(0), key())).data

    data, _ = run(body, max_batch_size=1, max_queue_delay_s=0.0)
    assert data.shape == (H, W, 3)


def test_stop_fails_queued_frames() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> BaseException | None:
        future = batcher.submit(frame(0), key())
        await batcher.stop(drain=False)
        return future.exception()

    error, _ = run(body, start=False)
    assert error is not None and "shutting down" in str(error)


def test_queued_frame_past_its_deadline_leaves_the_queue_at_once_and_fails() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> tuple[int, int]:
        # Owner not started: frames stay queued, as when every worker is busy and the owner sleeps.
        late = batcher.submit(frame(0), key(), deadline=time.perf_counter() + 0.05)
        kept = batcher.submit(frame(1), key())
        with pytest.raises(DeadlineExceededError, match="deadline"):
            await asyncio.wait_for(late, 5)
        depth = batcher.depth
        assert sample(metrics, "itm_queue_depth") == depth
        batcher.start()
        return depth, (await kept).batch_size

    (depth, size), metrics = run(body, start=False, max_batch_size=8, max_queue_delay_s=0.0)
    assert depth == 1  # only the frame without a deadline is still queued
    assert size == 1  # the expired frame never joined its batch
    assert sample(metrics, "itm_batch_size_sum") == 1


def test_expired_frame_frees_room_for_the_next_submit() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> int:
        late = batcher.submit(frame(0), key(), deadline=time.perf_counter() + 0.02)
        with pytest.raises(OverloadedError):
            batcher.submit(frame(1), key())
        with pytest.raises(DeadlineExceededError):
            await asyncio.wait_for(late, 5)
        batcher.submit(frame(2), key())  # the queue of one has room again without the owner running
        return batcher.depth

    depth, _ = run(body, start=False, queue_size=1, max_batch_size=1)
    assert depth == 1


def test_frame_whose_batch_started_is_finished_after_its_deadline() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> tuple[int, ...]:
        run_batch = batcher.pool.run_batch

        def slow(*args: Any) -> Any:
            time.sleep(0.3)  # the deadline passes while the batch runs
            return run_batch(*args)

        batcher.pool.run_batch = slow  # type: ignore[method-assign]
        result = await batcher.submit(frame(0), key(), deadline=time.perf_counter() + 0.1)
        return result.data.shape

    shape, _ = run(body, max_batch_size=1, max_queue_delay_s=0.0)
    assert shape == (H, W, 3)


def test_stage_seconds_count_frames_not_batches() -> None:
    async def body(batcher: DynamicBatcher, metrics: Metrics) -> int:
        futures = [batcher.submit(frame(i), key()) for i in range(4)]
        batcher.start()
        return max([(await f).batch_size for f in futures])

    size, metrics = run(body, start=False, max_batch_size=4, max_queue_delay_s=0.0)
    assert size == 4 and sample(metrics, "itm_batches_total", reason="full") == 1
    assert sample(metrics, "itm_stage_seconds_count", stage="postprocess") == 4
    assert sample(metrics, "itm_stage_seconds_sum", stage="postprocess") > 0
