"""Metrics: every name of the issue registered on a fresh registry, buckets fit milliseconds."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from service.jobs.models import JobState
from service.metrics import DROP_REASONS, LATENCY_BUCKETS, STAGES, batch_buckets, build_metrics

NAMES = [
    "itm_stage_seconds",
    "itm_frame_latency_seconds",
    "itm_queue_wait_seconds",
    "itm_batch_size",
    "itm_frames_total",
    "itm_frames_dropped_total",
    "itm_requests_total",
    "itm_active_streams",
    "itm_jobs",
    "itm_queue_depth",
    "itm_model_info",
    "itm_segments_in_flight",
    "itm_segments_total",
    "itm_segment_seconds",
]


def test_every_metric_is_registered() -> None:
    registry = CollectorRegistry()
    build_metrics(registry, 8)
    names = {metric.name for metric in registry.collect()}
    for name in NAMES:
        assert name.removesuffix("_total") in names


def test_stages_and_job_states_are_exported_before_first_use() -> None:
    registry = CollectorRegistry()
    build_metrics(registry, job_states=[state.value for state in JobState])
    text = generate_latest(registry).decode()
    for stage in STAGES:
        assert f'itm_stage_seconds_count{{stage="{stage}"}} 0.0' in text
    for state in JobState:
        assert registry.get_sample_value("itm_jobs", {"state": state.value}) == 0


def test_counting_on_fresh_registries_is_independent() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    metrics = build_metrics(first)
    build_metrics(second)
    metrics.frames_total.labels(endpoint="stream", operator="bt2408").inc(3)
    metrics.frame_latency_seconds.labels(endpoint="stream").observe(0.012)
    assert first.get_sample_value("itm_frames_total", {"endpoint": "stream", "operator": "bt2408"}) == 3
    assert second.get_sample_value("itm_frames_total", {"endpoint": "stream", "operator": "bt2408"}) is None
    bucket = {"endpoint": "stream", "le": "0.02"}
    assert first.get_sample_value("itm_frame_latency_seconds_bucket", bucket) == 1


def test_building_twice_on_one_registry_fails() -> None:
    registry = CollectorRegistry()
    build_metrics(registry)
    with pytest.raises(ValueError):
        build_metrics(registry)


def test_buckets() -> None:
    assert LATENCY_BUCKETS[0] <= 0.001 and 0.033 in LATENCY_BUCKETS
    assert batch_buckets(8) == (1.0, 2.0, 4.0, 8.0)
    assert batch_buckets(6) == (1.0, 2.0, 4.0, 6.0)
    assert batch_buckets(1) == (1.0,)


def test_stage_timed_per_batch_is_observed_once_per_frame() -> None:
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    metrics.observe_stage("encode", 0.4, frames=4)  # one job batch of four frames
    metrics.observe_stage("preprocess", 0.1)  # one frame
    assert registry.get_sample_value("itm_stage_seconds_count", {"stage": "encode"}) == 4
    assert registry.get_sample_value("itm_stage_seconds_sum", {"stage": "encode"}) == pytest.approx(0.4)
    assert registry.get_sample_value("itm_stage_seconds_bucket", {"stage": "encode", "le": "0.1"}) == 4
    assert registry.get_sample_value("itm_stage_seconds_count", {"stage": "preprocess"}) == 1
    with pytest.raises(ValueError, match="frames must be at least 1"):
        metrics.observe_stage("encode", 0.1, frames=0)


def test_dropped_frames_are_labelled_by_endpoint_operator_and_reason() -> None:
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    assert "deadline" in DROP_REASONS
    metrics.frames_dropped_total.labels(endpoint="stream", operator="mqn", reason="deadline").inc()
    labels = {"endpoint": "stream", "operator": "mqn", "reason": "deadline"}
    assert registry.get_sample_value("itm_frames_dropped_total", labels) == 1
    with pytest.raises(ValueError):
        metrics.frames_dropped_total.labels(reason="stale")  # the old, unlabelled form is gone


def test_segments_move_between_states_and_end_with_an_outcome() -> None:
    registry = CollectorRegistry()
    metrics = build_metrics(registry)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("itm_segments_in_flight", state="queued") == 0
    assert value("itm_segments_total", outcome="failed") == 0
    for _ in range(3):
        metrics.segment_moved("", "queued")
    metrics.segment_moved("queued", "running")
    metrics.segment_moved("queued", "running")
    metrics.segment_moved("running", "done", 4.0)
    metrics.segment_moved("queued", "cancelled")
    metrics.segment_moved("running", "failed")
    assert value("itm_segments_in_flight", state="queued") == 0
    assert value("itm_segments_in_flight", state="running") == 0
    assert [value("itm_segments_total", outcome=o) for o in ("done", "failed", "cancelled")] == [1, 1, 1]
    assert value("itm_segment_seconds_count") == 1 and value("itm_segment_seconds_sum") == 4.0
