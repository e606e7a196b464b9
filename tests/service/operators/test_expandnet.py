"""The ``expandnet`` operator: listed without a model and failing clearly, its fused output stage against the
NumPy reference, and (with a smoke-trained model) layout, batch independence, sizes, peak and borders."""

from pathlib import Path

import numpy as np
import pytest

from service.colour.description import ColourDescription
from service.colour.pq import eotf_inverse_st2084, eotf_st2084
from service.errors import EngineError
from service.operators import available_operators, create_operator
from service.operators.learned import OutputSpec, anchored_sigmoid, offsets_to_nits
from tests.models.expandnet_smoke import expandnet_dir, needs_smoke_model

__all__ = ["expandnet_dir"]

OUTPUT_STAGE_MAX_CODES = 0.05
"""Fused output stage (logit table) against the exact maths, in 10-bit PQ codes."""
BATCH_ATOL_NITS = 1e-3


def test_listed_with_its_parameters_even_without_a_model() -> None:
    infos = {info.name: info for info in available_operators()}
    assert [p.name for p in infos["expandnet"].params] == ["peak_nits"]


def test_missing_model_fails_with_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path))
    with pytest.raises(EngineError, match=r"expandnet is not available: .*models.export --model expandnet"):
        create_operator("expandnet", peak_nits=1000.0)


@pytest.mark.parametrize(
    "colour", [ColourDescription.video(), ColourDescription.still()], ids=["video", "still"]
)
@pytest.mark.parametrize("peak", [1000.0, 400.0])
def test_output_stage_matches_the_reference(colour: ColourDescription, peak: float) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 30, 42, 3), dtype=np.uint8)
    offsets = rng.normal(0.0, 3.0, frames.shape).astype(np.float32)
    offsets[0, 0, 0] = (-80.0, 80.0, 0.0)  # far outside the table: saturates, no inf
    spec = OutputSpec(1000.0, peak)
    got = offsets_to_nits(frames, colour, offsets, spec)
    base = eotf_inverse_st2084(colour.linear_lut(203.0)[frames])
    light = np.minimum(
        np.asarray(eotf_st2084(anchored_sigmoid(base, offsets, spec.pq_peak)), np.float64), peak
    )
    ref = light @ colour.to_bt2020_matrix().T
    assert got.dtype == np.float32 and got.max() <= peak * (1 + 1e-6)
    codes = np.abs(np.asarray(eotf_inverse_st2084(got)) - np.asarray(eotf_inverse_st2084(ref))) * 1023
    assert codes.max() <= OUTPUT_STAGE_MAX_CODES


def test_zero_offsets_are_bt2408() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (1, 16, 24, 3), dtype=np.uint8)
    colour = ColourDescription.video()
    got = offsets_to_nits(frames, colour, np.zeros(frames.shape, np.float32), OutputSpec(1000.0, 1000.0))
    ref = create_operator("bt2408", peak_nits=1000.0)(frames, colour)
    visible = ref > 0.05  # below that the anchor's logit is clipped (eps of the PQ range)
    np.testing.assert_allclose(got[visible], ref[visible], rtol=1e-3)


@needs_smoke_model
def test_layout_batch_independence_and_peak(expandnet_dir: Path) -> None:
    op = create_operator("expandnet", peak_nits=1000.0)
    assert op.name == "expandnet" and op.params == {"peak_nits": 1000.0}
    frames = np.random.default_rng(2).integers(0, 256, (3, 72, 128, 3), dtype=np.uint8)
    colour = ColourDescription.video()
    batch = op(frames, colour)
    assert batch.shape == (3, 72, 128, 3) and batch.dtype == np.float32
    assert np.isfinite(batch).all() and batch.min() >= 0.0 and batch.max() <= 1000.0
    for i in range(3):
        np.testing.assert_allclose(batch[i], op(frames[i : i + 1], colour)[0], atol=BATCH_ATOL_NITS)
    assert set(op.clock.seconds) >= {"preprocess", "backbone", "head"}
    low = create_operator("expandnet", peak_nits=300.0)(frames, colour)
    assert low.max() <= 300.0 * (1 + 1e-6)


@needs_smoke_model
def test_odd_and_tiny_sizes_keep_their_shape(expandnet_dir: Path) -> None:
    op = create_operator("expandnet", peak_nits=1000.0)
    for h, w in ((45, 77), (16, 64), (300, 16)):
        frames = np.random.default_rng(h).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        out = op(frames, ColourDescription.still())
        assert out.shape == (1, h, w, 3) and np.isfinite(out).all()


@needs_smoke_model
def test_flat_field_stays_flat_to_the_border(expandnet_dir: Path) -> None:
    """Edge-replicating padding: a flat frame comes out flat, border included (zero padding darkens it)."""
    op = create_operator("expandnet", peak_nits=1000.0)
    out = op(np.full((1, 180, 320, 3), (90, 140, 200), np.uint8), ColourDescription.video())[0]
    assert np.abs(out / out[90, 160] - 1.0).max() < 1e-3
