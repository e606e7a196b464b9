"""Stage timing: the operator's laps reach ``itm_stage_seconds`` under the closed set of stage names."""

import numpy as np
import pytest

from service.colour.description import ColourDescription
from service.inference.pool import WorkerPool
from service.inference.types import BatchKey, OperatorSpec
from service.metrics import STAGES
from service.timing import StageClock
from tests.models.markers import needs_artifacts, needs_litert

pytestmark = pytest.mark.timeout(120)


def test_laps_accumulate_per_stage() -> None:
    clock = StageClock()
    first = clock.lap("head")
    second = clock.lap("head")
    clock.lap("backbone")
    assert clock.seconds["head"] == pytest.approx(first + second)
    assert set(clock.seconds) == {"head", "backbone"}


def _stages(name: str, **params: float | str) -> dict[str, float]:
    pool = WorkerPool(1)
    try:
        key = BatchKey(OperatorSpec.of(name, **params), 96, 160, ColourDescription.video(), "rgb10a2")
        frames = [np.full((96, 160, 3), 120, np.uint8)]
        return pool.executor.submit(pool.run_batch, key, frames).result().stages
    finally:
        pool.shutdown()


def test_classical_operator_time_is_all_postprocess() -> None:
    stages = _stages("bt2408", peak_nits=1000.0)
    assert set(stages) == {"postprocess"} and stages["postprocess"] > 0.0


@needs_litert
@needs_artifacts
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_mqn_reports_preprocess_backbone_head_and_postprocess(mode: str) -> None:
    stages = _stages("mqn", peak_nits=1000.0, mode=mode)
    assert set(stages) == {"preprocess", "backbone", "head", "postprocess"} <= set(STAGES)
    assert all(seconds > 0.0 for seconds in stages.values())
