"""Worker pool: thread-local operators, packing, warm-up on every worker."""

import threading

import numpy as np
import pytest

from service.colour.description import ColourDescription
from service.colour.packing import pack_rgb10a2, pack_rgb48
from service.inference.pool import WorkerPool
from service.inference.types import BatchKey, OperatorSpec
from service.operators import create_operator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pool() -> WorkerPool:
    pool = WorkerPool(2)
    yield pool  # type: ignore[misc]
    pool.shutdown()


def test_run_batch_outputs(pool: WorkerPool) -> None:
    spec = OperatorSpec.of("bt2408", peak_nits=1000.0)
    frames = [np.full((4, 6, 3), v, np.uint8) for v in (0, 128, 255)]
    reference = create_operator("bt2408", peak_nits=1000.0)(np.stack(frames), ColourDescription.still())
    for output, pack in (("nits", None), ("rgb10a2", pack_rgb10a2), ("rgb48", pack_rgb48)):
        key = BatchKey(spec, 4, 6, ColourDescription.still(), output)  # type: ignore[arg-type]
        out = pool.executor.submit(pool.run_batch, key, frames).result()
        assert out.infer_start <= out.infer_end
        for got, want in zip(out.frames, reference, strict=True):
            np.testing.assert_array_equal(got, want if pack is None else pack(want))


def test_each_thread_builds_its_own_operator(pool: WorkerPool) -> None:
    spec = OperatorSpec.of("bt2446a", peak_nits=1000.0)
    barrier = threading.Barrier(2)

    def grab() -> int:
        barrier.wait(30)
        return id(pool.operator(spec))

    ids = [f.result() for f in [pool.executor.submit(grab) for _ in range(2)]]
    assert ids[0] != ids[1]
    assert pool.executor.submit(lambda: id(pool.operator(spec)) in ids).result()


def test_warm_up_reaches_every_worker(pool: WorkerPool) -> None:
    spec = OperatorSpec.of("inverse_reinhard", peak_nits=1000.0)
    pool.warm_up([spec], 8, 8)
    barrier = threading.Barrier(2)

    def cached() -> bool:
        barrier.wait(30)
        return spec in getattr(pool._local, "operators", {})

    assert all(f.result() for f in [pool.executor.submit(cached) for _ in range(2)])


def test_invalid_spec_is_rejected() -> None:
    with pytest.raises(ValueError):
        OperatorSpec.of("bt2408", peak_nits=5.0)
    with pytest.raises(ValueError):
        WorkerPool(0)
