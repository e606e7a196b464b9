"""bench/models.py on tiny inputs: discovery, MAC arithmetic, quality lookup and a 2-frame end-to-end run."""

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bench._report
from bench.flicker import DATA, deltas
from bench.models import (
    QUALITY_KEYS,
    artifact_scores,
    discover,
    flicker_scores,
    main,
    new_row,
    op_macs,
    pick_row,
    quality_row,
    streamed_deltas,
    table,
    winners,
)
from models.mqn.artifacts import ARTIFACTS
from service.colour.description import ColourDescription
from service.operators import create_operator

needs_litert = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert is not installed"
)
needs_mqn = pytest.mark.skipif(
    not (ARTIFACTS / "mqn.json").exists(), reason=f"no exported MQN in {ARTIFACTS}"
)
needs_clips = pytest.mark.skipif(not DATA.exists(), reason=f"no shared clips at {DATA}")


@needs_mqn
def test_discover_lists_the_anchors_and_every_mode_of_a_learned_operator() -> None:
    targets, skipped = discover(["bt2408", "bt2446a", "mqn"])
    assert [t.label for t in targets] == ["bt2408", "bt2446a", "mqn fast", "mqn quality"]
    assert [t.learned for t in targets] == [False, False, True, True]
    assert all(t.meta and t.version for t in targets if t.learned)
    assert skipped == {}


def test_discover_skips_a_learned_model_that_is_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path))  # an empty artefact folder
    targets, skipped = discover(["bt2408", "expandnet"])
    assert [t.label for t in targets] == ["bt2408"]
    assert "expandnet.json" in skipped["expandnet"]


def test_discover_rejects_unknown_operators_and_modes() -> None:
    with pytest.raises(ValueError, match="not known"):
        discover(["nope"])
    with pytest.raises(ValueError, match="no mode"):
        discover(["bt2408:fast"])


@pytest.mark.parametrize(
    ("op", "inputs", "output", "macs"),
    [
        ("CONV_2D", [(1, 8, 8, 3), (16, 3, 3, 3), (16,)], (1, 4, 4, 16), 4 * 4 * 16 * 27),
        ("DEPTHWISE_CONV_2D", [(1, 8, 8, 16), (1, 3, 3, 16), (16,)], (1, 8, 8, 16), 64 * 16 * 9),
        ("FULLY_CONNECTED", [(2, 64), (10, 64), (10,)], (2, 10), 2 * 10 * 64),
        ("TRANSPOSE_CONV", [(4,), (8, 2, 2, 16), (1, 4, 4, 16)], (1, 8, 8, 8), 4 * 4 * 16 * 2 * 2 * 8),
        ("ADD", [(1, 8), (1, 8)], (1, 8), 0),
    ],
)
def test_macs_per_op(op: str, inputs: list[tuple[int, ...]], output: tuple[int, ...], macs: int) -> None:
    assert op_macs(op, inputs, output) == macs


def write_eval(path: Path, table: dict[str, dict[str, float]]) -> None:
    path.write_text(json.dumps({"table": table, "cases": 3, "size": [64, 36]}))


def test_quality_comes_from_the_model_s_own_table_and_its_served_row(tmp_path: Path) -> None:
    scores = dict.fromkeys(QUALITY_KEYS, 1.0)
    mqn = {"bt2408": scores, "mqn fast (float)": scores, "mqn fast (int8+DR)": scores}
    write_eval(tmp_path / "eval.json", mqn)
    write_eval(
        tmp_path / "eval_foo.json", {"bt2408": scores, "foo (float)": scores, "foo (int8+float)": scores}
    )
    assert quality_row("bt2408", None, tmp_path)["source"].endswith("eval.json")  # type: ignore[index]
    foo = quality_row("foo", None, tmp_path)
    assert foo is not None
    assert foo["source"].endswith("eval_foo.json")
    assert foo["row"] == "foo (int8+float)"
    assert quality_row("mqn", "fast", tmp_path)["row"] == "mqn fast (int8+DR)"  # type: ignore[index]
    assert quality_row("mqn", "quality", tmp_path) is None
    assert quality_row("bar", None, tmp_path) is None
    assert pick_row({"mqn fast (float)": {}}, "mqn", "fast") == "mqn fast (float)"  # only the float twin


def test_streamed_deltas_equal_bench_flicker_deltas() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.uniform(0, 1000, (6, 5, 3)).astype(np.float32) for _ in range(11)]
    assert streamed_deltas(iter(frames), chunk=3) == pytest.approx(deltas(frames), rel=1e-6)
    with pytest.raises(ValueError, match="two frames"):
        streamed_deltas(iter(frames[:1]))


def test_a_clip_that_does_not_change_has_no_flicker_ratio_and_is_not_averaged() -> None:
    from service.colour.description import ColourDescription
    from service.operators import create_operator

    rng = np.random.default_rng(3)
    moving = rng.integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    still = np.repeat(moving[:1], 4, axis=0)
    colour = ColourDescription.video()
    bt2446a = create_operator("bt2446a", peak_nits=1000.0)
    scores = flicker_scores({"bt2446a": bt2446a}, {"moving": (moving, colour), "still": (still, colour)})
    s = scores["bt2446a"]
    assert s["per_clip"]["still"]["ratio_pix_vs_bt2408"] is None
    assert s["ratio_pix_vs_bt2408"] == pytest.approx(s["per_clip"]["moving"]["ratio_pix_vs_bt2408"])


def test_bt2408_against_itself_scores_no_artifacts_and_flicker_ratio_one() -> None:
    y, x = np.mgrid[0:48, 0:64]
    frame = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    bt2408 = create_operator("bt2408", peak_nits=1000.0)
    scores = artifact_scores(bt2408, [("synthetic", frame)])
    assert scores["reversal_pct"] == 0.0
    assert scores["darkened_pct"] == 0.0
    assert scores["frames"] == 1
    clip = np.stack([np.clip(frame.astype(int) + 3 * i, 0, 255).astype(np.uint8) for i in range(4)])
    flicker = flicker_scores({"bt2408": bt2408}, {"synthetic": (clip, ColourDescription.video())})
    assert flicker["bt2408"]["ratio_pix_vs_bt2408"] == pytest.approx(1.0)
    assert flicker["bt2408"]["per_clip"]["synthetic"]["mean_abs_dpq"] > 0.0


def test_the_table_marks_what_was_not_measured() -> None:
    targets, _ = discover(["bt2408"])
    row = new_row(targets[0])
    md = table([row])
    assert md.splitlines()[2].startswith("| bt2408 | – | 0 | – | – |")
    assert md.count("\n") == 3
    assert winners([row]) == []  # no learned row, nothing to rank


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m bench.models`` on 2 frames of bt2408 and mqn fast, every measure, results in a tmp dir."""
    results = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench._report, "RESULTS", results)
        argv = ["--operators", "bt2408", "mqn:fast", "--frames", "2", "--warmup", "1"]
        argv += ["--artifact-frames", "1", "--flicker-frames", "3", "--flicker-clips", "bikes.mp4"]
        assert main(argv) == 0
    assert (results / "models.md").read_text().startswith("## The learned operators")
    record: dict[str, Any] = json.loads((results / "models.json").read_text())
    return record


@needs_litert
@needs_mqn
@needs_clips
def test_quick_run_rows(quick_run: dict[str, Any]) -> None:
    bt2408, mqn = quick_run["cases"]
    assert (bt2408["label"], mqn["label"]) == ("bt2408", "mqn fast")
    assert quick_run["settings"]["frames"] == 2
    for row in (bt2408, mqn):
        assert not row.get("error")
        assert row["latency_ms"]["frames"] == 2
        assert 0.0 < row["latency_ms"]["median"] <= row["latency_ms"]["p90"] < 60_000.0
        assert 0.0 < row["base_rss_mb"] < row["peak_rss_mb"] < 16_000.0
        assert row["quality"]["source"].startswith("models/results/eval")
        assert 0.5 < row["quality"]["midtone_ratio"] < 2.0
        assert row["artifacts"]["frames"] == 1
        assert 0.0 <= row["artifacts"]["reversal_pct"] <= 100.0
        assert 100.0 < row["artifacts"]["p999_nits"] <= 1000.0 + 1e-3
        assert row["flicker"]["ratio_pix_vs_bt2408"] > 0.0
    assert bt2408["gmacs_1080p"] is None and bt2408["graphs"] == [] and bt2408["params"] == 0
    assert bt2408["flicker"]["ratio_pix_vs_bt2408"] == pytest.approx(1.0)
    assert 0.0 < mqn["gmacs_1080p"] < 10.0  # a 256 px view, not the 1080p frame
    assert {g["model"] for g in mqn["graphs"]} == {"mqn_backbone_int8.tflite", "mqn_head_dr.tflite"}
    assert all(g["invokes_per_frame"] == 1.0 for g in mqn["graphs"])
    assert mqn["params"] == json.loads((ARTIFACTS / "mqn.json").read_text())["params"] > 0
    assert 0 < mqn["tflite_params"] <= 2 * mqn["params"]
    assert mqn["quality"]["row"] == "mqn fast (int8+DR)"


def test_highlights_are_read_only_from_tables_that_pool_them(tmp_path: Path) -> None:
    """Tables written before the pooled highlight error hold a per-case mean of PSNRs, which one exact case
    inflates by several dB: such a figure is left out rather than put next to pooled ones."""
    old = dict.fromkeys(QUALITY_KEYS, 20.0)
    write_eval(tmp_path / "eval_old.json", {"old (int8+float)": old})
    write_eval(tmp_path / "eval_new.json", {"new (int8+float)": old | {"highlight_pu21_mse": 9.0}})
    assert quality_row("old", None, tmp_path)["highlight_pu21_psnr"] is None  # type: ignore[index]
    assert quality_row("new", None, tmp_path)["highlight_pu21_psnr"] == 20.0  # type: ignore[index]
