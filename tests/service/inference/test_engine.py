"""The LiteRT engine: per-thread interpreters, shape cache, stride check, no TensorFlow at serving time."""

import subprocess
import sys
import threading

import numpy as np
import pytest

from tests.models.markers import needs_artifacts, needs_litert

pytestmark = [pytest.mark.litert, needs_litert, needs_artifacts]


def test_each_thread_gets_its_own_interpreters_and_shapes_are_cached() -> None:
    from service.inference.engine import MQNEngine

    engine = MQNEngine(num_threads=1, max_shapes=2)
    sdr = np.full((1, 64, 64, 3), 128, np.uint8)
    first = engine.run(sdr)
    pair = engine._pairs()[(1, 64, 64)]
    engine.run(sdr)
    assert engine._pairs()[(1, 64, 64)] is pair  # cached, not rebuilt
    seen: list[object] = []
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(engine.run(sdr))
        seen.append(engine._pairs()[(1, 64, 64)])

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen[0] is not pair
    np.testing.assert_array_equal(results[0], first)


def test_lru_keeps_at_most_max_shapes_and_outputs_the_curves_of_each_cell() -> None:
    from service.inference.engine import MQNEngine

    engine = MQNEngine(num_threads=1, max_shapes=2)
    cell = engine.meta["grid_stride"]
    curves = engine.meta["curves"]
    # Base (and peak) curve knots, then a format-5 model's two log-saturations.
    knots = (len(curves["knots_nits"]) - 1) * (2 if curves.get("paired") else 1)
    knots += 2 if curves.get("saturation") else 0
    for h, w in ((32, 64), (64, 64), (96, 128)):
        out = engine.run(np.zeros((1, h, w, 3), np.uint8))
        assert out.shape == (1, h // cell, w // cell, knots)
    assert list(engine._pairs()) == [(1, 64, 64), (1, 96, 128)]


def test_sizes_off_the_stride_are_refused() -> None:
    from service.errors import EngineError
    from service.inference.engine import MQNEngine

    with pytest.raises(EngineError, match="multiple of the network stride"):
        MQNEngine(num_threads=1).run(np.zeros((1, 33, 64, 3), np.uint8))


def test_serving_path_never_imports_tensorflow() -> None:
    code = (
        "import sys, numpy as np\n"
        "from service.colour.description import ColourDescription\n"
        "from service.operators import create_operator\n"
        "op = create_operator('mqn', peak_nits=1000.0)\n"
        "op(np.zeros((1, 64, 64, 3), np.uint8), ColourDescription.video())\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
