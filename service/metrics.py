"""Every Prometheus metric of the service, built in one place against an explicit registry.

Tests pass a fresh ``CollectorRegistry()`` so counts never leak between them; the app builds one registry per
instance. Label values come from closed sets only (stage names, endpoints, operator names, drop reasons, job
states, route templates): never ids, paths or sizes, so cardinality stays bounded.

``itm_stage_seconds`` counts frames in every stage: work timed for a whole batch (a job's decode and encode,
an inference batch) is observed once per frame, at the batch's time divided by its frames
(:meth:`Metrics.observe_stage`), so ``_count`` is frames and ``_sum`` is seconds in every stage alike.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.033,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
"""Seconds; dense around one frame time at 30-60 fps, where the stream targets live."""

STAGES = ("decode", "preprocess", "backbone", "head", "postprocess", "encode")
DROP_REASONS = ("stale", "overloaded", "deadline", "shutdown")
"""Why a stream frame got a drop report instead of a result (docs/PROTOCOL.md §4)."""
DROP_ENDPOINTS = ("stream",)
"""Endpoints that drop frames: only the live stream does (jobs and stills wait or fail, never drop)."""
SEGMENT_STATES = ("queued", "running")
"""Current states of a scale-out segment (``itm_segments_in_flight``); ``running`` is estimated from the
cluster's task slots, since Ray does not tell a driver when a task starts."""
SEGMENT_OUTCOMES = ("done", "failed", "cancelled")
"""How a segment ends (``itm_segments_total``)."""
SEGMENT_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds one segment takes on a worker: ~10 s of video at a few to a few hundred frames per second."""


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Powers of two up to ``max_batch_size`` (1, 2, 4 … max), so every batch size has its own bucket edge."""
    edges: list[float] = []
    size = 1
    while size < max_batch_size:
        edges.append(float(size))
        size *= 2
    edges.append(float(max_batch_size))
    return tuple(edges)


@dataclass(frozen=True)
class Metrics:
    """Handles on every metric; pass this object around instead of touching globals."""

    registry: CollectorRegistry
    stage_seconds: Histogram
    frame_latency_seconds: Histogram
    queue_wait_seconds: Histogram
    batch_size: Histogram
    batches_total: Counter
    frames_total: Counter
    frames_dropped_total: Counter
    requests_total: Counter
    active_streams: Gauge
    jobs: Gauge
    queue_depth: Gauge
    model_info: Gauge
    segments: Gauge
    segments_total: Counter
    segment_seconds: Histogram

    def segment_moved(self, previous: str, state: str, seconds: float = 0.0) -> None:
        """Count a scale-out segment moving from ``previous`` (empty when new) to ``state``.

        ``seconds`` is the worker time of a ``done`` segment.
        """
        if previous in SEGMENT_STATES:
            self.segments.labels(state=previous).dec()
        if state in SEGMENT_STATES:
            self.segments.labels(state=state).inc()
        elif state in SEGMENT_OUTCOMES:
            self.segments_total.labels(outcome=state).inc()
        if state == "done":
            self.segment_seconds.observe(seconds)

    def observe_stage(self, stage: str, seconds: float, frames: int = 1) -> None:
        """Record ``seconds`` of ``stage`` spent on ``frames`` frames as one observation per frame.

        Each observation is the per-frame mean, so stages timed per batch and stages timed per frame give
        comparable counts (frames) and sums (seconds).

        Raises
        ------
        ValueError
            If ``frames`` is less than 1.
        """
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        child = self.stage_seconds.labels(stage=stage)
        for _ in range(frames):
            child.observe(seconds / frames)


def build_metrics(
    registry: CollectorRegistry, max_batch_size: int = 64, job_states: Iterable[str] = ()
) -> Metrics:
    """Create and register every metric on ``registry``.

    ``job_states`` (the values of :class:`service.jobs.models.JobState`, which the app passes) start the
    ``itm_jobs`` gauge at 0 for each state; this module sits below the job package and does not import it.

    Raises
    ------
    ValueError
        If the registry already holds these metrics (build once per registry).
    """
    stage = Histogram(
        "itm_stage_seconds",
        "Wall time of one pipeline stage per frame (batch time / frames)",
        ["stage"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    jobs = Gauge("itm_jobs", "Conversion jobs by state", ["state"], registry=registry)
    for name in STAGES:
        stage.labels(stage=name)
    for state in job_states:
        jobs.labels(state=state).set(0)
    segments = Gauge(
        "itm_segments_in_flight",
        "Scale-out segments not ended, by state (running: estimated from the cluster's task slots)",
        ["state"],
        registry=registry,
    )
    segments_total = Counter("itm_segments_total", "Scale-out segments ended", ["outcome"], registry=registry)
    for state in SEGMENT_STATES:
        segments.labels(state=state).set(0)
    for outcome in SEGMENT_OUTCOMES:
        segments_total.labels(outcome=outcome)
    return Metrics(
        registry=registry,
        stage_seconds=stage,
        frame_latency_seconds=Histogram(
            "itm_frame_latency_seconds",
            "Frame received to result sent",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        queue_wait_seconds=Histogram(
            "itm_queue_wait_seconds",
            "Time a frame waited in the batcher queue",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        batch_size=Histogram(
            "itm_batch_size",
            "Frames per inference batch",
            buckets=batch_buckets(max_batch_size),
            registry=registry,
        ),
        batches_total=Counter(
            "itm_batches_total", "Batches closed, by why they closed", ["reason"], registry=registry
        ),
        frames_total=Counter(
            "itm_frames_total", "Frames converted", ["endpoint", "operator"], registry=registry
        ),
        frames_dropped_total=Counter(
            "itm_frames_dropped_total",
            "Frames not converted, by endpoint, operator and reason",
            ["endpoint", "operator", "reason"],
            registry=registry,
        ),
        requests_total=Counter(
            "itm_requests_total",
            "HTTP requests by route template and status",
            ["route", "status"],
            registry=registry,
        ),
        active_streams=Gauge("itm_active_streams", "Open WebSocket streams", registry=registry),
        jobs=jobs,
        queue_depth=Gauge("itm_queue_depth", "Frames waiting in the batcher queue", registry=registry),
        model_info=Gauge(
            "itm_model_info",
            "Loaded operators (value 1); version names the trained model run, empty for classical ones",
            ["name", "mode", "quant", "version"],
            registry=registry,
        ),
        segments=segments,
        segments_total=segments_total,
        segment_seconds=Histogram(
            "itm_segment_seconds",
            "Worker wall time of one scale-out segment",
            buckets=SEGMENT_BUCKETS,
            registry=registry,
        ),
    )
