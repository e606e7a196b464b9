"""SIGKILL of the server mid-job and mid-stream, then a restart on the same data dir.

A killed process runs no cleanup: its job rows say ``running``, its pipeline temporaries stay on disk, and
its streams' sockets just drop. After the restart every job must be completed, resumed (re-run to success)
or failed with a reason; nothing may be ``succeeded`` without a valid HDR10 file; no temporaries may remain;
stream clients must see their documented error, and new streams must work.
"""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from clients import Stream, StreamClosedError, StreamOptions, StreamResult
from service.pipeline import convert_video
from tests.faults.conftest import (
    ServerProcess,
    alive,
    assert_valid_hdr10,
    has_open_file_under,
    leftovers,
    spawned_children,
    submit,
    wait_final,
    wait_until,
)
from tests.faults.faulty_operator import SLOW_NAME, SLOW_PATH, SLOW_S
from tests.service.conftest import make_clip

pytestmark = pytest.mark.timeout(180)

LONG_FRAMES = 200
"""About 1.5 s of conversion at 256 x 144 on 2 cores: long enough to be killed mid-way."""
SHORT_FRAMES = 12


def _kill_mid_conversion(server: ServerProcess, client: httpx.Client, location: str) -> None:
    """Wait until the job is converting and its pass-1 temp file exists, then SIGKILL the server."""
    folder = server.data_dir / "jobs" / location.rsplit("/", 1)[1]

    def converting() -> bool:
        job = client.get(location).json()
        assert job["state"] in ("queued", "running"), job
        temp = any(p.parent == folder for p in leftovers(server.data_dir))
        return job["state"] == "running" and temp and job["progress"]["frames_done"] < LONG_FRAMES

    wait_until(converting, 60, f"{location} to be mid-conversion")
    server.kill()


def test_sigkill_mid_job_then_restart_resumes_fails_or_completes_every_job(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    long_a = make_clip(tmp_path / "a.mp4", frames=LONG_FRAMES, width=256, height=144)
    long_b = make_clip(tmp_path / "b.mp4", frames=LONG_FRAMES, width=256, height=144)
    short_c = make_clip(tmp_path / "c.mp4", frames=SHORT_FRAMES)

    # 1st life: A runs, B and C wait. Killed while A converts.
    server = server_factory(job_concurrency=1)
    data = server.data_dir
    with httpx.Client(base_url=server.url, timeout=30) as client:
        a, b, c = (submit(client, clip) for clip in (long_a, long_b, short_c))
        _kill_mid_conversion(server, client, a)
    a_id = a.rsplit("/", 1)[1]
    stale = [p for p in leftovers(data) if p.parent.name == a_id]
    assert stale, "precondition: a killed conversion leaves its pass-1 temp file behind"

    # 2nd life: the sweep removed A's stale temp; A is re-run (attempt 2) to success; then B is killed.
    server = server_factory(job_concurrency=1)
    assert not any(p.exists() for p in stale), "start-up did not sweep the killed conversion's temp file"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        resumed = wait_final(client, a)
        assert resumed["state"] == "succeeded", resumed
        _kill_mid_conversion(server, client, b)

    # 3rd life: B is re-run once more and killed again: it has now been running at two crashes.
    server = server_factory(job_concurrency=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _kill_mid_conversion(server, client, b)

    # 4th life: B is failed with the reason, never retried a third time; C, queued all along, completes.
    server = server_factory(job_concurrency=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        jobs: dict[str, dict[str, Any]] = {
            name: wait_final(client, loc) for name, loc in zip("abc", (a, b, c), strict=True)
        }
        listed = {job["id"]: job["state"] for job in client.get("/v1/jobs").json()["items"]}
        assert jobs["a"]["state"] == "succeeded" and jobs["c"]["state"] == "succeeded", jobs
        assert jobs["b"]["state"] == "failed", jobs["b"]
        assert "server stopped while the job ran (2 attempts)" in jobs["b"]["error"]
        assert client.get(f"{b}/result").status_code == 409
        assert sorted(listed.values()) == ["failed", "succeeded", "succeeded"]
        for name, frames in (("a", LONG_FRAMES), ("c", SHORT_FRAMES)):
            result = tmp_path / f"{name}_hdr10.mp4"
            response = client.get(jobs[name]["result_url"])
            assert response.status_code == 200
            result.write_bytes(response.content)
            assert_valid_hdr10(result, frames)
        assert server.ready()
    assert leftovers(data) == []
    b_dir = data / "jobs" / jobs["b"]["id"]
    assert not b_dir.exists() or not any(b_dir.iterdir()), "a failed job's files must be removed"


def test_startup_sweep_spares_live_jobs_and_removes_orphans(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Orphaned temporaries and folders of no job go at start-up; a job's own input/output never do; a
    ``succeeded`` job whose file vanished meanwhile is reported failed rather than served as a 409/404."""
    server = server_factory(job_concurrency=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        done = wait_final(client, submit(client, make_clip(tmp_path / "a.mp4", frames=SHORT_FRAMES)))
        lost = wait_final(client, submit(client, make_clip(tmp_path / "b.mp4", frames=SHORT_FRAMES)))
    server.kill()
    (server.data_dir / "jobs" / lost["id"] / "output.mp4").unlink()
    folder = server.data_dir / "jobs" / done["id"]
    planted = [
        folder / ".output.0123abcd.encode.mp4",  # what a killed pass 1 leaves
        folder / ".output.89abcdef.final.mp4",
        server.data_dir / "jobs" / "feedface00000000" / "input.mp4",  # upload moved in, no job row
        server.data_dir / "tmp" / "0123456789abcdef.part",  # an upload cut off by the kill
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    kept = sorted(folder.iterdir())

    server = server_factory(job_concurrency=1)
    assert not any(p.exists() for p in planted)
    assert not (server.data_dir / "jobs" / "feedface00000000").exists()
    assert sorted(folder.iterdir()) == [p for p in kept if p not in planted]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get(done["result_url"]).status_code == 200
        now_lost = client.get(f"/v1/jobs/{lost['id']}").json()
        assert now_lost["state"] == "failed" and "result file was lost" in now_lost["error"], now_lost


def test_sigkill_mid_stream_client_gets_clean_error_and_new_streams_work(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    options = StreamOptions(64, 48, output="rgb10a2", mode="lossless", credits=2, operator="bt2408")
    frame = np.full((48, 64, 3), 128, np.uint8)
    stream = Stream.connect(server.url, options)
    try:
        results = 0
        with pytest.raises(StreamClosedError) as closed:
            for _ in range(10_000):
                while stream.can_send():
                    stream.send(frame)
                if isinstance(stream.receive(timeout=5), StreamResult):
                    results += 1
                if results == 3 and server.proc is not None and server.proc.poll() is None:
                    server.kill()
            pytest.fail("the stream kept going after the server was killed")
    finally:
        stream.close()
    assert results >= 3
    assert closed.value.code == 1006, closed.value  # abnormal closure: no close frame was ever sent

    server = server_factory(data_dir=server.data_dir)
    with Stream.connect(server.url, options) as again:
        events = list(again.run([frame] * 5))
    assert [e.seq for e in events if isinstance(e, StreamResult)] == [0, 1, 2, 3, 4]


def test_sweep_while_serving_never_touches_a_running_job(
    live_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """The temp sweep may run at any time: a job converting right now keeps its temporaries and input."""
    started, release = threading.Event(), threading.Event()

    def converter(src: Path, dst: Path, operator: Any, options: Any, *, progress: Any, cancel: Any) -> Any:
        temp = dst.with_name(f".{dst.stem}.0123abcd.encode{dst.suffix}")  # as the pipeline names pass 1
        temp.write_bytes(b"partial")
        started.set()
        release.wait(60)
        temp.unlink()
        return convert_video(src, dst, operator, options, progress=progress, cancel=cancel)

    live = live_factory(converter=converter, job_concurrency=1)
    jobs = live.server.itm_app.state.itm.jobs
    with httpx.Client(base_url=live.url, timeout=30) as client:
        location = submit(client, make_clip(tmp_path / "a.mp4", frames=SHORT_FRAMES))
        assert started.wait(60)
        folder = jobs.jobs_dir / location.rsplit("/", 1)[1]
        orphan = jobs.jobs_dir / "0000000000000000" / ".output.89abcdef.final.mp4"
        orphan.parent.mkdir()
        orphan.write_bytes(b"left by a killed process")
        before = sorted(folder.iterdir())
        assert jobs.sweep_orphans() == 1
        assert sorted(folder.iterdir()) == before and not orphan.exists()
        release.set()
        assert wait_final(client, location)["state"] == "succeeded"
    assert leftovers(live.settings.data_dir) == []


def test_sigkill_takes_isolated_job_children_down_with_the_server(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """An isolated job's child must not outlive a SIGKILLed server and keep writing into the job folder."""
    server = server_factory(job_isolation="true", extra_operators=SLOW_PATH)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # 6 batches of 8 frames at SLOW_S each: the child would convert for 10 s more after the first one.
        location = submit(client, make_clip(tmp_path / "a.mp4", frames=48), operator=SLOW_NAME)
        converting = lambda: client.get(location).json()["progress"]["frames_done"] > 0  # noqa: E731
        wait_until(converting, 60, "a converted batch")
    folder = server.data_dir / "jobs" / location.rsplit("/", 1)[1]
    job_children = [pid for pid in spawned_children(server.pid) if has_open_file_under(pid, folder)]
    assert job_children, "precondition: the isolated job runs in a spawned child"
    server.kill()
    wait_until(lambda: not any(map(alive, job_children)), 2 * SLOW_S, "the job's child to die with it")


def test_sigkill_leaves_no_orphan_probe_worker(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        wait_final(client, submit(client, make_clip(tmp_path / "a.mp4", frames=SHORT_FRAMES)))
    children = spawned_children(server.pid)
    assert children, "precondition: the upload was probed in a spawned worker"
    server.kill()
    wait_until(lambda: not any(map(alive, children)), 3, "the probe worker to die with the server")
