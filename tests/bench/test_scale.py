"""bench/scale.py's arithmetic: the overhead it reports and the N-node projection docs/SCALING.md uses."""

import pytest

from bench.scale import (
    ScaleModel,
    concat_bound_nodes,
    overhead,
    projected_wall_s,
    projection,
    store_bytes_per_s,
)

# 10 s segments taking 50 worker-seconds each; the driver costs nothing unless a test says so.
WORKERS_ONLY = ScaleModel(
    segment_s=10.0,
    segment_wall_s=50.0,
    split_s_per_video_s=0.0,
    concat_s_per_video_s=0.0,
    finalize_s_per_video_s=0.0,
    store_bytes_per_video_s=500_000.0,
)


def test_overhead_is_extra_seconds_and_their_ratio_to_in_process() -> None:
    assert overhead(100.0, 110.0) == pytest.approx((10.0, 0.10))
    assert overhead(100.0, 92.0) == pytest.approx((-8.0, -0.08))  # faster segmented: a negative overhead


@pytest.mark.parametrize(("nodes", "waves"), [(1, 6), (2, 3), (4, 2), (6, 1), (100, 1)])
def test_segments_run_in_waves_of_one_per_slot(nodes: int, waves: int) -> None:
    assert projected_wall_s(WORKERS_ONLY, 60.0, nodes) == pytest.approx(waves * 50.0)


def test_a_partial_last_segment_is_still_a_wave() -> None:
    assert projected_wall_s(WORKERS_ONLY, 61.0, 6) == pytest.approx(2 * 50.0)
    assert projected_wall_s(WORKERS_ONLY, 5.0, 4) == pytest.approx(50.0)


def test_split_and_finalize_are_serial_and_the_last_concatenation_is_the_tail() -> None:
    model = ScaleModel(10.0, 50.0, 0.01, 0.005, 0.02, 0.0)
    # 60 s: split 0.6 + 3 waves + last segment's concat 0.05 + finalize 1.2
    assert projected_wall_s(model, 60.0, 2) == pytest.approx(0.6 + 150.0 + 0.05 + 1.2)


def test_a_slow_concatenation_sets_the_pace_past_its_bound() -> None:
    model = ScaleModel(10.0, 50.0, 0.0, 1.0, 0.0, 0.0)  # the driver concatenates 1 s of video per second
    assert concat_bound_nodes(model) == pytest.approx(5.0)
    assert projected_wall_s(model, 60.0, 6) == pytest.approx(60.0 + 10.0)  # not 50 + 10
    assert projected_wall_s(model, 60.0, 1) == pytest.approx(300.0 + 10.0)


def test_store_traffic_grows_with_the_slots_converting() -> None:
    # one slot: 10 s of video per 50 s = 0.2 s of video/s at 500 kB per second of video
    assert store_bytes_per_s(WORKERS_ONLY, 1) == pytest.approx(100_000.0)
    assert store_bytes_per_s(WORKERS_ONLY, 8) == pytest.approx(800_000.0)


def test_projection_rows() -> None:
    rows = projection(WORKERS_ONLY, 60.0, [1, 2, 6])
    assert [row["nodes"] for row in rows] == [1, 2, 6]
    assert [row["speedup"] for row in rows] == pytest.approx([1.0, 2.0, 6.0])
    assert rows[2]["video_s_per_s"] == pytest.approx(60.0 / 50.0)
    assert rows[0]["store_mbit_per_s"] == pytest.approx(0.8)


@pytest.mark.parametrize(("nodes", "video_s"), [(0, 60.0), (2, 0.0)])
def test_projection_refuses_no_slots_or_no_video(nodes: int, video_s: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        projected_wall_s(WORKERS_ONLY, video_s, nodes)
