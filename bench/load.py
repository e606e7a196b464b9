"""Load/soak and overload of the whole service on loopback: mixed streams and jobs for a duration, then far
more than it can take.

**Soak**: 8 concurrent WebSocket streams (4 ``live``, 4 ``lossless``; 720p rgb24 frames from real clips,
looped, paced at ``--fps``) plus ``--job-workers`` (4) upload workers that each submit a job, wait for it,
download the result, delete it and submit again, for ``--duration`` seconds. Prints per-stream sustained fps
and p50/p99 latency, drops by reason, completed jobs, server RSS and open file descriptors every
``--sample-every`` seconds, then PASS/FAIL lines: lossless streams lost no frame, RSS grew < 5 % after
``--warmup``, no 5xx, jobs completed.

**Overload** (``--overload-duration``): the stream slots are filled with faster streams, extra streams try to
join, a burst of uploads beyond ``ITM_JOB_QUEUE_SIZE`` and of images beyond ``ITM_QUEUE_SIZE`` arrive, and
``/healthz`` is probed throughout. The service should refuse with 503 + ``Retry-After`` and close extra
streams with 1013, keep the latency of what it admitted bounded, and answer ``/healthz`` fast.

The server runs with its defaults (``ITM_MAX_STREAMS`` 8, ``ITM_QUEUE_SIZE`` 64, ``ITM_JOB_QUEUE_SIZE`` 32),
in a child process so its RSS and fds are its own. Writes bench/results/load.json and prints a markdown
summary for docs/RELIABILITY.md.

    .venv/bin/python -m bench.load [--duration 600] [--fps 2] [--operator mqn] [--job-workers 4]
                                     [--overload-duration 60]
"""

import argparse
import asyncio
import contextlib
import io
import itertools
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench._report import environment, write
from bench._server import VIDEO, Server, load_frames
from clients import AsyncStream, ClientError, StreamClosedError, StreamDrop, StreamOptions
from clients.protocol import StreamMode
from service.config import Settings

HEIGHT, WIDTH = 720, 1280
STREAM_CLIPS = ("bigbuckbunny.mp4", "aliasing_ferris-ref.mp4")
FINAL = ("succeeded", "failed", "cancelled")
LIMITS: dict[str, int] = {
    name: Settings.model_fields[name].default for name in ("max_streams", "queue_size", "job_queue_size")
}
"""The server defaults this benchmark runs with, read from Settings; the overload is sized on them."""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile, NaN for no values (a stream that got nothing still prints a row)."""
    return float(np.percentile(values, q)) if values else float("nan")


# -- streams -----------------------------------------------------------------------------------------------


@dataclass
class StreamStats:
    """What one client stream saw, possibly over several connections."""

    name: str
    mode: StreamMode
    target_fps: float
    sent: int = 0
    results: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    closes: Counter[int] = field(default_factory=Counter)
    reasons: dict[int, str] = field(default_factory=dict)
    """The server's reason for the first close with each code other than 1000."""
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        """Results per second over the time the stream ran."""
        return self.results / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        """Frames sent that got no result (drop reports included)."""
        return self.sent - self.results

    def row(self) -> dict[str, Any]:
        """The stream's figures for the JSON record."""
        return {
            "name": self.name,
            "mode": self.mode,
            "target_fps": self.target_fps,
            "sent": self.sent,
            "results": self.results,
            "fps": self.fps,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "drops": dict(self.drops),
            "lost": self.lost,
            "closes": {str(k): v for k, v in self.closes.items()},
            "close_reasons": {str(k): v for k, v in self.reasons.items()},
            "seconds": self.seconds,
        }


def paced_frames(frames: list[bytes], deadline: float) -> Iterator[bytes]:
    """The clip's frames looped until ``deadline`` (the client's pacing spaces them)."""
    for payload in itertools.cycle(frames):
        if time.perf_counter() >= deadline:
            return
        yield payload


async def run_stream(
    url: str, stats: StreamStats, frames: list[bytes], operator: str, deadline: float
) -> None:
    """Stream until ``deadline`` (reconnecting after an abnormal close) and accumulate ``stats``."""
    options = StreamOptions(
        WIDTH,
        HEIGHT,
        input="rgb24",
        output="rgb10a2",
        mode=stats.mode,
        operator=operator,
        operator_mode="fast" if operator == "mqn" else None,
        colour="bt709",
        credits=2,
    )
    while (started := time.perf_counter()) < deadline:
        client: AsyncStream | None = None
        try:
            client = await AsyncStream.connect(url, options, open_timeout=30)
            async for event in client.run(paced_frames(frames, deadline), fps=stats.target_fps):
                if isinstance(event, StreamDrop):
                    stats.drops[event.reason] += 1
                else:
                    stats.results += 1
                    stats.latencies_ms.append(event.latency_s * 1e3)
            stats.closes[1000] += 1
        except StreamClosedError as exc:
            stats.closes[exc.code] += 1
            stats.reasons.setdefault(exc.code, exc.reason)
            await asyncio.sleep(1.0)
        except (ClientError, OSError) as exc:  # not a close the server chose: counted as code -1
            print(f"    {stats.name}: {type(exc).__name__}: {exc}")
            stats.closes[-1] += 1
            await asyncio.sleep(1.0)
        finally:
            if client is not None:
                stats.sent += client.window.sent
                await client.close()
            stats.seconds += time.perf_counter() - started


async def try_extra_stream(url: str, operator: str) -> int:
    """Open one stream beyond the limit; returns the close code (0 if it was admitted)."""
    try:
        async with await AsyncStream.connect(url, StreamOptions(WIDTH, HEIGHT, operator=operator)):
            return 0
    except StreamClosedError as exc:
        return exc.code


# -- HTTP ----------------------------------------------------------------------------------------------------


@dataclass
class HttpStats:
    """Every HTTP answer the benchmark got, by status, and the refusals' Retry-After headers."""

    statuses: Counter[int] = field(default_factory=Counter)
    refused_without_retry_after: int = 0

    async def hook(self, response: httpx.Response) -> None:
        """httpx response hook: count the status; a 429/503 must say when to come back."""
        self.statuses[response.status_code] += 1
        if response.status_code in (429, 503) and "retry-after" not in response.headers:
            self.refused_without_retry_after += 1

    @property
    def server_errors(self) -> int:
        """5xx answers other than the 503 that signals overload."""
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


@dataclass
class JobStats:
    """Jobs the upload workers saw through."""

    completed: int = 0
    failed: list[str] = field(default_factory=list)
    refused: int = 0
    cancelled_at_end: int = 0
    frames_unfinished: int = 0
    """Frames converted by the jobs cancelled at the deadline."""
    frames: int = 0
    seconds: list[float] = field(default_factory=list)


async def job_worker(
    http: httpx.AsyncClient, clip: bytes, name: str, operator: str, deadline: float, stats: JobStats
) -> None:
    """Submit, wait, download, delete, again, until ``deadline``; a job still running then is cancelled."""
    params = {"operator": operator, "preset": "ultrafast"}
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await http.post("/v1/jobs", params=params, content=clip, headers={"X-Filename": name})
        if response.status_code != 202:
            stats.refused += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            continue
        location = response.headers["location"]
        while (job := (await http.get(location)).json())["state"] not in FINAL:
            if time.perf_counter() >= deadline:
                await http.delete(location)
                stats.cancelled_at_end += 1
                stats.frames_unfinished += job["progress"]["frames_done"]
                return
            await asyncio.sleep(0.5)
        if job["state"] == "succeeded":
            async with http.stream("GET", job["result_url"]) as result:
                async for _ in result.aiter_bytes(1 << 20):
                    pass
            stats.completed += 1
            stats.frames += job["progress"]["frames_done"]
            stats.seconds.append(time.perf_counter() - started)
        else:
            stats.failed.append(f"{job['state']}: {job['error']}")
        await http.delete(location)


# -- sampling ------------------------------------------------------------------------------------------


class HealthProbe:
    """Probes ``/healthz`` every ``every`` seconds from its own thread with a blocking client.

    A thread, not a task: the benchmark's event loop is busy with its streams and bursts, and a probe queued
    behind them would measure the client, not the server's event loop.
    """

    def __init__(self, url: str, every: float = 0.25) -> None:
        self.url = f"{url}/healthz"
        self.every = every
        self.ms: list[float] = []
        """Round trips in ms; inf for a failed probe."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = http.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.ms.append((time.perf_counter() - start) * 1e3 if ok else float("inf"))
                self._stop.wait(self.every)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, since: int = 0) -> dict[str, float]:
        """Probes, p50, p99 and max (ms) of the probes from index ``since`` on."""
        values = self.ms[since:]
        return {
            "probes": len(values),
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": max(values, default=float("nan")),
        }


@dataclass
class Sample:
    """Server state at one moment of the run (``healthz_max_ms``: worst probe since the previous sample)."""

    t_s: float
    rss_mb: float
    fds: int
    healthz_max_ms: float


async def sampler(
    server: Server, probe: HealthProbe, t0: float, every: float, deadline: float, out: list[Sample]
) -> None:
    """Record RSS and fds every ``every`` seconds (and once at the end), printing each row as it comes."""
    seen = 0
    while True:
        now = time.perf_counter()
        worst = probe.summary(seen)["max"]
        seen = len(probe.ms)
        sample = Sample(now - t0, server.rss_mb(), server.open_fds(), worst)
        out.append(sample)
        print(
            f"    t={sample.t_s:5.0f} s  RSS {sample.rss_mb:6.0f} MB  fds {sample.fds:4d}  "
            f"/healthz max {sample.healthz_max_ms:6.1f} ms",
            flush=True,
        )
        if now >= deadline:
            return
        await asyncio.sleep(min(every, max(0.0, deadline - time.perf_counter())))


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def sum_by_label(samples: dict[str, float], label: str) -> dict[str, float]:
    """Sum samples keyed ``name{a="x",b="y"}`` (as :meth:`Server.metric_samples` returns them) per ``label``.

    A counter with more labels than the one asked for has one sample per label set: the drop counter has one
    per endpoint, operator and reason, so two operators dropping for the same reason are two samples that
    must be added, not one overwriting the other. Samples without the label are left out.
    """
    sums: dict[str, float] = {}
    for key, value in samples.items():
        labels = dict(_LABEL.findall(key.partition("{")[2]))
        if label in labels:
            sums[labels[label]] = sums.get(labels[label], 0.0) + value
    return sums


def dropped_by_reason(server: Server) -> dict[str, float]:
    """The server's ``itm_frames_dropped_total`` per reason, summed over endpoints and operators."""
    return sum_by_label(server.metric_samples("itm_frames_dropped_total{"), "reason")


def server_5xx(server: Server) -> dict[str, float]:
    """``itm_requests_total`` samples with a 5xx status, per route and status."""
    samples = server.metric_samples("itm_requests_total{")
    return {key: value for key, value in samples.items() if 'status="5' in key and value}


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    """Counter increments between two scrapes (non-zero only)."""
    return {k: int(v - before.get(k, 0.0)) for k, v in after.items() if v - before.get(k, 0.0)}


# -- phases --------------------------------------------------------------------------------------------


def make_streams(prefix: str, count: int, fps: float) -> list[StreamStats]:
    """``count`` streams, alternating live and lossless (so half of each)."""
    modes: tuple[StreamMode, StreamMode] = ("live", "lossless")
    return [StreamStats(f"{prefix}{i}", modes[i % 2], fps) for i in range(count)]


def print_streams(streams: list[StreamStats]) -> None:
    for s in streams:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(s.drops.items())) or "none"
        closes = ", ".join(f"{k}x{v}" for k, v in sorted(s.closes.items()))
        if s.reasons:
            closes += " (" + "; ".join(f"{k}: {v}" for k, v in s.reasons.items()) + ")"
        print(
            f"    {s.name:9s} {s.mode:8s} {s.fps:5.2f} fps (target {s.target_fps:g}); latency p50 "
            f"{percentile(s.latencies_ms, 50):6.0f} ms, p99 {percentile(s.latencies_ms, 99):6.0f} ms; "
            f"sent {s.sent}, results {s.results}, drops {drops}; closes {closes}"
        )


async def soak(
    server: Server, args: argparse.Namespace, clips: list[list[bytes]], job_clip: bytes, http_stats: HttpStats
) -> dict[str, Any]:
    """The mixed load for ``args.duration`` seconds; returns the case record."""
    streams = make_streams("stream", 8, args.fps)
    jobs = JobStats()
    samples: list[Sample] = []
    dropped_before, errors_before = dropped_by_reason(server), server_5xx(server)
    print(
        f"soak: 8 streams (4 live, 4 lossless, 720p, {args.fps:g} fps each) + {args.job_workers} upload "
        "workers "
        f"({args.job_clip}), {args.operator}, {args.duration:g} s",
        flush=True,
    )
    t0 = time.perf_counter()
    deadline = t0 + args.duration
    async with httpx.AsyncClient(
        base_url=server.url, timeout=300, event_hooks={"response": [http_stats.hook]}
    ) as http:
        tasks = [
            run_stream(server.url, s, clips[i % len(clips)], args.operator, deadline)
            for i, s in enumerate(streams)
        ]
        tasks += [
            job_worker(http, job_clip, args.job_clip, args.operator, deadline, jobs)
            for _ in range(args.job_workers)
        ]
        with HealthProbe(server.url) as probe:
            tasks.append(sampler(server, probe, t0, args.sample_every, deadline, samples))
            await asyncio.gather(*tasks)
    health = probe.summary()
    elapsed = time.perf_counter() - t0
    dropped = difference(dropped_by_reason(server), dropped_before)
    errors = difference(server_5xx(server), errors_before)

    print_streams(streams)
    total_fps = sum(s.fps for s in streams)
    print(f"    all streams {total_fps:.1f} fps; server drops by reason {dropped or 'none'}")
    job_s = f"{np.median(jobs.seconds):.1f}" if jobs.seconds else "-"
    print(
        f"    jobs: {jobs.completed} completed ({jobs.frames} frames, median {job_s} s submit to "
        f"downloaded), {len(jobs.failed)} failed, {jobs.refused} refused, {jobs.cancelled_at_end} cancelled "
        f"at the end after {jobs.frames_unfinished} frames"
    )
    print(
        f"    /healthz: {health['probes']} probes, p50 {health['p50']:.1f} ms, p99 {health['p99']:.1f} ms, "
        f"max {health['max']:.1f} ms"
    )
    for error in jobs.failed[:5]:
        print(f"      failed: {error}")

    warm = [s for s in samples if s.t_s >= min(args.warmup, args.duration / 2)]
    base, last = warm[0], samples[-1]
    growth = 100.0 * (last.rss_mb - base.rss_mb) / base.rss_mb
    peak = max(s.rss_mb for s in warm)
    lossless = [s for s in streams if s.mode == "lossless"]
    lost = sum(s.lost for s in lossless) + sum(sum(s.drops.values()) for s in lossless)
    abnormal = sum(n for s in streams for code, n in s.closes.items() if code != 1000)
    kept_up = all(s.fps >= 0.95 * s.target_fps for s in lossless)
    checks = {
        "lossless streams lost zero frames": lost == 0 and all(set(s.closes) == {1000} for s in lossless),
        f"RSS growth after warm-up {growth:+.1f} % < 5 %": growth < 5.0,
        "no 5xx": http_stats.server_errors == 0
        and not errors
        and not any(code == 1011 for s in streams for code in s.closes),
        f"jobs progressed alongside the streams ({jobs.completed} completed)": jobs.completed > 0
        or not args.job_workers,
    }
    print(
        f"    RSS after warm-up (t={base.t_s:.0f} s) {base.rss_mb:.0f} MB -> end {last.rss_mb:.0f} MB "
        f"(peak {peak:.0f} MB); fds {base.fds} -> {last.fds} (max {max(s.fds for s in warm)})"
    )
    print(
        f"    lossless streams {'kept up with' if kept_up else 'fell behind'} {args.fps:g} fps "
        f"({', '.join(f'{s.fps:.2f}' for s in lossless)}); abnormal stream closes {abnormal}"
    )
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    return {
        "name": "soak",
        "operator": args.operator,
        "seconds": elapsed,
        "fps_target": args.fps,
        "streams": [s.row() for s in streams],
        "fps_all_streams": total_fps,
        "server_drops": dropped,
        "server_5xx": errors,
        "http_statuses": {str(k): v for k, v in http_stats.statuses.items()},
        "jobs": {
            "completed": jobs.completed,
            "frames": jobs.frames,
            "failed": jobs.failed,
            "refused": jobs.refused,
            "cancelled_at_end": jobs.cancelled_at_end,
            "frames_unfinished": jobs.frames_unfinished,
            "median_s": float(np.median(jobs.seconds)) if jobs.seconds else None,
        },
        "samples": [vars(s) for s in samples],
        "healthz_ms": health,
        "warmup_s": base.t_s,
        "rss_growth_pct": growth,
        "rss_peak_mb": peak,
        "lossless_kept_up": kept_up,
        "lossless_lost": lost,
        "abnormal_closes": abnormal,
        "checks": checks,
    }


def jpeg(frame: bytes, height: int = 1080, width: int = 1920) -> bytes:
    """A 720p clip frame upscaled to ``width`` x ``height`` as JPEG (what a client would upload)."""
    image = Image.frombytes("RGB", (WIDTH, HEIGHT), frame).resize((width, height))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def timed_post(http: httpx.AsyncClient, url: str, **kwargs: Any) -> tuple[int, float, bool]:
    """Status, seconds, and whether a refusal carried Retry-After, of one POST."""
    start = time.perf_counter()
    response = await http.post(url, **kwargs)
    return response.status_code, time.perf_counter() - start, "retry-after" in response.headers


def burst_summary(name: str, offered: int, outcomes: list[tuple[int, float, bool]]) -> dict[str, Any]:
    statuses = Counter(status for status, _, _ in outcomes)
    admitted = [seconds for status, seconds, _ in outcomes if status < 300]
    refused = [(s, r) for s, _, r in outcomes if s in (429, 503)]
    print(
        f"    {name}: {offered} offered -> {dict(sorted(statuses.items()))}; refusals with Retry-After "
        f"{sum(r for _, r in refused)}/{len(refused)}; admitted latency p50 "
        f"{percentile(admitted, 50):.2f} s, "
        f"max {max(admitted, default=float('nan')):.2f} s"
    )
    return {
        "offered": offered,
        "statuses": {str(k): v for k, v in statuses.items()},
        "refused": len(refused),
        "refused_with_retry_after": sum(r for _, r in refused),
        "admitted_p50_s": percentile(admitted, 50),
        "admitted_max_s": max(admitted, default=None),
    }


async def overload(
    server: Server, args: argparse.Namespace, clips: list[list[bytes]], job_clip: bytes, http_stats: HttpStats
) -> dict[str, Any]:
    """Offer far more than capacity for ``args.overload_duration`` seconds; returns the case record."""
    streams = make_streams("over", LIMITS["max_streams"], args.overload_fps)
    uploads = LIMITS["job_queue_size"] + 16
    images = LIMITS["queue_size"] + 64
    extra = 8
    print(
        f"overload: {len(streams)} streams at {args.overload_fps:g} fps fill the slots, {extra} more try "
        "to join, "
        f"{uploads} concurrent uploads (queue {LIMITS['job_queue_size']}), {images} concurrent 1080p images "
        f"(queue {LIMITS['queue_size']} frames), /healthz probed every 0.25 s; {args.overload_duration:g} s",
        flush=True,
    )
    dropped_before, errors_before = dropped_by_reason(server), server_5xx(server)
    picture = jpeg(clips[0][0])
    limits = httpx.Limits(max_connections=uploads + images + 8, max_keepalive_connections=32)
    t0 = time.perf_counter()
    deadline = t0 + args.overload_duration
    async with httpx.AsyncClient(
        base_url=server.url, timeout=600, limits=limits, event_hooks={"response": [http_stats.hook]}
    ) as http:
        with HealthProbe(server.url) as probe:
            background = [
                asyncio.ensure_future(
                    run_stream(server.url, s, clips[i % len(clips)], args.operator, deadline)
                )
                for i, s in enumerate(streams)
            ]
            await asyncio.sleep(3.0)  # the admitted streams hold every slot
            closes = Counter(
                await asyncio.gather(*[try_extra_stream(server.url, args.operator) for _ in range(extra)])
            )
            print(f"    extra streams: close codes {dict(closes)}", flush=True)
            params = {"operator": args.operator, "preset": "ultrafast"}
            job_outcomes = await asyncio.gather(
                *[
                    timed_post(
                        http,
                        "/v1/jobs",
                        params=params,
                        content=job_clip,
                        headers={"X-Filename": args.job_clip},
                    )
                    for _ in range(uploads)
                ]
            )
            jobs = burst_summary("uploads", uploads, job_outcomes)
            image_outcomes = await asyncio.gather(
                *[
                    timed_post(http, "/v1/images", params={"operator": args.operator}, content=picture)
                    for _ in range(images)
                ]
            )
            pictures = burst_summary("images", images, image_outcomes)
            await asyncio.gather(*background)
        health = probe.summary()
        # Clear the accepted jobs so the server is idle again, then check it still serves.
        listing = (await http.get("/v1/jobs", params={"limit": 200})).json()["items"]
        await asyncio.gather(*[http.delete(f"/v1/jobs/{job['id']}") for job in listing])
        recovered = StreamStats("after", "lossless", 0.0)
        await run_stream(server.url, recovered, clips[0][:4], args.operator, time.perf_counter() + 1.0)
        ready = (await http.get("/readyz")).status_code
    dropped = difference(dropped_by_reason(server), dropped_before)
    errors = difference(server_5xx(server), errors_before)
    print_streams(streams)
    live = [v for s in streams if s.mode == "live" for v in s.latencies_ms]
    lossless = [v for s in streams if s.mode == "lossless" for v in s.latencies_ms]
    print(
        f"    admitted streams: live p99 {percentile(live, 99):.0f} ms, lossless p99 "
        f"{percentile(lossless, 99):.0f} ms; server drops by reason {dropped or 'none'}"
    )
    print(
        f"    /healthz during overload: {health['probes']} probes, p50 {health['p50']:.1f} ms, "
        f"p99 {health['p99']:.1f} ms, max {health['max']:.1f} ms"
    )
    print(
        f"    after the overload: /readyz {ready}; a new lossless stream got {recovered.results} of "
        f"{recovered.sent} frames"
    )
    accepted_jobs = jobs["statuses"].get("202", 0)
    checks = {
        f"extra streams closed 1013 ({closes.get(1013, 0)}/{extra})": closes.get(1013, 0) == extra,
        f"images beyond the queue refused 503 + Retry-After ({pictures['refused']}/{images})": pictures[
            "refused"
        ]
        > 0
        and pictures["refused_with_retry_after"] == pictures["refused"]
        and set(pictures["statuses"]) <= {"200", "503"},
        f"uploads beyond job_queue_size refused 503 + Retry-After ({accepted_jobs} of {uploads} accepted, "
        f"limit {LIMITS['job_queue_size']} queued + 1 running)": accepted_jobs <= LIMITS["job_queue_size"] + 1
        and jobs["refused_with_retry_after"] == jobs["refused"]
        and set(jobs["statuses"]) <= {"202", "503"},
        "no 5xx other than 503": http_stats.server_errors == 0
        and not {k: v for k, v in errors.items() if 'status="503"' not in k},
        f"/healthz stayed fast (max {health['max']:.0f} ms < 1000 ms)": health["max"] < 1000.0,
        "server serves again after the overload": ready == 200 and recovered.results == recovered.sent > 0,
        "admitted lossless streams lost zero frames": all(
            s.lost == 0 and set(s.closes) == {1000} for s in streams if s.mode == "lossless"
        ),
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    return {
        "name": "overload",
        "seconds": time.perf_counter() - t0,
        "fps_target": args.overload_fps,
        "streams": [s.row() for s in streams],
        "extra_stream_closes": {str(k): v for k, v in closes.items()},
        "uploads": jobs,
        "images": pictures,
        "server_drops": dropped,
        "server_5xx": errors,
        "healthz_ms": health,
        "live_p99_ms": percentile(live, 99),
        "lossless_p99_ms": percentile(lossless, 99),
        "recovered": {"readyz": ready, "sent": recovered.sent, "results": recovered.results},
        "checks": checks,
    }


def markdown(
    soak_case: dict[str, Any],
    over: dict[str, Any] | None,
    args: argparse.Namespace,
    load: tuple[float, ...],
    started: str,
) -> str:
    """The figures as a ready-to-paste section for docs/RELIABILITY.md."""
    command = (
        f".venv/bin/python -m bench.load --duration {args.duration:g} --fps {args.fps:g} "
        f"--operator {args.operator} --overload-duration {args.overload_duration:g}"
    )
    rows = [
        f"| {s['name']} | {s['mode']} | {s['fps']:.2f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | {s['sent']} "
        f"| {s['results']} | {', '.join(f'{k} {v}' for k, v in sorted(s['drops'].items())) or '0'} |"
        for s in soak_case["streams"]
    ]
    series = ", ".join(f"{s['t_s']:.0f} s: {s['rss_mb']:.0f} MB / {s['fds']}" for s in soak_case["samples"])
    jobs, health = soak_case["jobs"], soak_case["healthz_ms"]
    busy = " (other work was running on the machine)" if load[0] > 0.5 else ""  # before our own load
    lines = [
        "## Load and soak",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Run started {started} at git {environment()['git_sha']} on "
        f"{os.cpu_count()} cores; load average when it started {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"(1/5/15 min){busy}. Server defaults: `ITM_MAX_STREAMS` {LIMITS['max_streams']}, `ITM_QUEUE_SIZE` "
        f"{LIMITS['queue_size']}, `ITM_JOB_QUEUE_SIZE` {LIMITS['job_queue_size']}, one worker per core, "
        f"operator `{args.operator}` (fast).",
        "",
        f"**Soak** ({soak_case['seconds']:.0f} s): 8 streams of 720p real-clip frames paced at {args.fps:g} "
        "fps "
        f"(4 `live`, 4 `lossless`, 2 credits each) plus {args.job_workers} upload workers re-submitting "
        f"`{args.job_clip}`.",
        "",
        "| stream | mode | fps | p50 ms | p99 ms | sent | results | drops |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"- all streams together {soak_case['fps_all_streams']:.1f} fps; server drops by reason "
        f"{soak_case['server_drops'] or 'none'}; lossless streams "
        + (
            "kept up"
            if soak_case["lossless_kept_up"]
            else "fell behind the target fps (without losing a frame)"
        ),
        f"- jobs: {jobs['completed']} completed ({jobs['frames']} frames), {len(jobs['failed'])} failed, "
        f"{jobs['refused']} refused, {jobs['cancelled_at_end']} cancelled at the end after "
        f"{jobs['frames_unfinished']} frames",
        f"- server RSS / open fds over time: {series}",
        f"- RSS from the end of warm-up ({soak_case['warmup_s']:.0f} s) to the end: "
        f"{soak_case['rss_growth_pct']:+.1f} %, peak {soak_case['rss_peak_mb']:.0f} MB",
        f"- /healthz (probed every 0.25 s from a separate thread): p50 {health['p50']:.1f} ms, p99 "
        f"{health['p99']:.1f} ms, max {health['max']:.1f} ms",
        "",
        *[f"- {'PASS' if ok else 'FAIL'} {name}" for name, ok in soak_case["checks"].items()],
    ]
    if over is not None:
        health = over["healthz_ms"]
        lines += [
            "",
            f"**Overload** ({over['seconds']:.0f} s): every stream slot taken by streams at "
            f"{over['fps_target']:g} fps, 8 more streams, {over['uploads']['offered']} concurrent uploads, "
            f"{over['images']['offered']} concurrent 1080p images.",
            "",
            f"- extra streams: close codes {over['extra_stream_closes']}",
            f"- uploads: {over['uploads']['statuses']}; images: {over['images']['statuses']} "
            f"(admitted images p50 {over['images']['admitted_p50_s']:.1f} s, max "
            f"{over['images']['admitted_max_s'] or float('nan'):.1f} s)",
            f"- admitted streams p99: live {over['live_p99_ms']:.0f} ms, lossless "
            f"{over['lossless_p99_ms']:.0f} ms; server drops {over['server_drops'] or 'none'}",
            f"- /healthz: p50 {health['p50']:.1f} ms, p99 {health['p99']:.1f} ms, max {health['max']:.1f} ms",
            "",
            *[f"- {'PASS' if ok else 'FAIL'} {name}" for name, ok in over["checks"].items()],
        ]
    return "\n".join(lines)


def server_log(path: Path) -> Counter[str]:
    """The server's log lines with timestamps and ids stripped, counted (what a long run complained about)."""
    lines: Counter[str] = Counter()
    for row in path.read_text(errors="replace").splitlines():
        parts = row.split(" ", 2)
        text = parts[2] if len(parts) == 3 and parts[0][:2] == "20" else row
        lines[re.sub(r"\b[0-9a-f]{12,16}\b|\d+", "N", text)[:160]] += 1
    return lines


async def main_async(args: argparse.Namespace) -> None:
    missing = [name for name in (*STREAM_CLIPS, args.job_clip) if not (VIDEO / name).is_file()]
    if missing:
        print(f"skipped: clips {missing} not found in {VIDEO}")
        return
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    clips = [load_frames(HEIGHT, WIDTH, args.frames, VIDEO / name) for name in STREAM_CLIPS]
    job_clip = (VIDEO / args.job_clip).read_bytes()
    log = Path(tempfile.gettempdir()) / f"itm-load-server-{os.getpid()}.log"
    server = Server(
        log,
        ITM_DEFAULT_OPERATOR=args.operator,
        ITM_DEFAULT_MODE="fast",
        ITM_WARMUP_SIZE=f"[{HEIGHT}, {WIDTH}]",
    )
    http_stats = HttpStats()
    cases: list[dict[str, Any]] = []
    try:
        print(
            f"server ready in {server.wait_ready():.1f} s; RSS {server.rss_mb():.0f} MB, fds "
            f"{server.open_fds()}; load average {' '.join(f'{x:.2f}' for x in load_before)}"
        )
        soak_case = await soak(server, args, clips, job_clip, http_stats)
        cases.append(soak_case)
        over = None
        if args.overload_duration > 0:
            over = await overload(server, args, clips, job_clip, HttpStats())
            cases.append(over)
    finally:
        with contextlib.suppress(Exception):
            server.stop()
    logged = server_log(log)
    print(f"server log {log}: " + "; ".join(f"{n} x {line}" for line, n in logged.most_common(6)))
    cases.append({"name": "server_log", "lines": dict(logged.most_common(20))})
    print(f"wrote {write('load', cases)}")
    print("\n--- markdown for docs/RELIABILITY.md ---\n")
    print(markdown(soak_case, over, args, load_before, started))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="soak seconds")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second each soak stream offers")
    parser.add_argument("--operator", default="mqn")
    parser.add_argument("--job-workers", type=int, default=4, help="concurrent upload workers in the soak")
    parser.add_argument("--job-clip", default="bigbuckbunny.mp4", help="clip the upload workers submit")
    parser.add_argument("--frames", type=int, default=24, help="frames decoded per clip (looped)")
    parser.add_argument("--warmup", type=float, default=60.0, help="RSS growth is measured from this second")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between RSS/fd samples")
    parser.add_argument("--overload-duration", type=float, default=60.0, help="0 skips the overload phase")
    parser.add_argument(
        "--overload-fps", type=float, default=30.0, help="fps of each admitted overload stream"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
