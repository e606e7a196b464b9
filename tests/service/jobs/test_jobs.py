"""REST conversion jobs over a real server: upload, probe, convert, download, cancel, restart, TTL."""

import json
import shutil
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from service.errors import JobCancelledError
from service.pipeline import convert_video

pytestmark = pytest.mark.timeout(180)

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "video"
FINAL = ("succeeded", "failed", "cancelled")


def make_clip(path: Path, frames: int = 6, width: int = 64, height: int = 48, **tags: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for name, value in tags.items():
            setattr(stream.codec_context, name, value)
        for i in range(frames):
            rgb = np.full((height, width, 3), (i * 40) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def ffprobe(path: Path) -> dict[str, Any]:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_streams", "-select_streams", "v:0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stream: dict[str, Any] = json.loads(out)["streams"][0]
    return stream


def wait_final(client: httpx.Client, location: str, timeout: float = 150.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(location).json()
        if job["state"] in FINAL:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['state']}"
        time.sleep(0.05)


def no_temp_files(live: Any) -> bool:
    tmp = live.settings.data_dir / "tmp"
    return not tmp.exists() or not any(tmp.iterdir())


class Gate:
    """A converter that holds the job in ``running`` until released or cancelled, then converts for real."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(
        self, src: Path, dst: Path, operator: Any, options: Any, *, progress: Any, cancel: Any
    ) -> Any:
        self.started.set()
        while not self.release.is_set():
            if cancel.wait(0.01):
                raise JobCancelledError("cancelled")
        return convert_video(src, dst, operator, options, progress=progress, cancel=cancel)


def test_real_clip_round_trip_with_ffprobe_and_range(live: Any, tmp_path: Path) -> None:
    src = DATA / "carphone_pristine.mp4"
    if not src.is_file():
        pytest.skip(f"shared data not found at {DATA}")
    with httpx.Client(base_url=live.url, timeout=60) as client:
        with src.open("rb") as body:
            response = client.post(
                "/v1/jobs",
                params={"preset": "ultrafast", "peak_nits": 1000},
                content=body,
                headers={"Content-Type": "video/mp4", "X-Filename": src.name},
            )
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        assert location == f"/v1/jobs/{response.json()['id']}"
        job = wait_final(client, location)
        assert job["state"] == "succeeded", job
        assert job["progress"]["frames_done"] == job["progress"]["frames_total"] == 120
        result = client.get(job["result_url"])
        assert result.status_code == 200
        assert result.headers["content-type"] == "video/mp4"
        assert result.headers["content-disposition"] == 'attachment; filename="carphone_pristine_hdr10.mp4"'
        assert len(result.content) == job["result_bytes"]
        partial = client.get(job["result_url"], headers={"Range": "bytes=100-199"})
        assert partial.status_code == 206
        assert partial.content == result.content[100:200]
        assert partial.headers["content-range"] == f"bytes 100-199/{len(result.content)}"
    out = tmp_path / "out.mp4"
    out.write_bytes(result.content)
    stream = ffprobe(out)
    assert stream["codec_name"] == "hevc"
    assert stream["pix_fmt"] == "yuv420p10le"
    assert stream["color_transfer"] == "smpte2084"
    assert stream["color_primaries"] == "bt2020"
    assert stream["color_space"] == "bt2020nc"
    assert live.sample("itm_jobs", {"state": "succeeded"}) == 1
    assert live.sample("itm_frames_total", {"endpoint": "jobs", "operator": "bt2446a"}) == 120
    assert no_temp_files(live)


def test_multipart_upload_with_options(live: Any, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4")
    options = {"operator": "bt2408", "container": "mkv", "preset": "ultrafast", "crf": 28}
    with httpx.Client(base_url=live.url, timeout=60) as client:
        response = client.post(
            "/v1/jobs",
            files={"file": ("holiday clip.mp4", clip.read_bytes(), "video/mp4")},
            data={"options": json.dumps(options)},
        )
        assert response.status_code == 202, response.text
        assert response.json()["options"]["operator"] == "bt2408"
        job = wait_final(client, response.headers["location"])
        assert job["state"] == "succeeded", job
        assert job["filename"] == "holiday clip.mp4"
        result = client.get(job["result_url"])
        assert result.headers["content-type"] == "video/x-matroska"
        # RFC 6266 / 5987: a name with a space is sent percent-encoded.
        disposition = result.headers["content-disposition"]
        assert disposition == "attachment; filename*=utf-8''holiday%20clip_hdr10.mkv"
    out = tmp_path / "out.mkv"
    out.write_bytes(result.content)
    assert ffprobe(out)["color_transfer"] == "smpte2084"


def test_job_reports_the_options_it_runs_with(live_factory: Any, tmp_path: Path) -> None:
    # Nothing given: the job stores and reports the server's defaults as resolved values, never null.
    from .moded_operator import NAME, PATH

    live = live_factory(
        extra_operators=PATH, default_operator=NAME, default_mode="quality", default_peak_nits=600.0
    )
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    resolved_moded = {
        "operator": NAME,
        "mode": "quality",
        "peak_nits": 600.0,
        "codec": "hevc",
        "crf": 20,
        "preset": "veryfast",
        "container": "mp4",
    }
    with httpx.Client(base_url=live.url, timeout=60) as client:
        response = client.post("/v1/jobs", content=clip.read_bytes())
        assert response.status_code == 202, response.text
        assert response.json()["options"] == resolved_moded
        # An operator without modes reports no mode; codec defaults follow the codec.
        response = client.post(
            "/v1/jobs",
            params={"operator": "bt2408", "mode": "quality", "codec": "av1", "container": "mkv"},
            content=clip.read_bytes(),
        )
        assert response.status_code == 202, response.text
        assert response.json()["options"] == {
            "operator": "bt2408",
            "mode": None,
            "peak_nits": 600.0,
            "codec": "av1",
            "crf": 30,
            "preset": "10",
            "container": "mkv",
        }
        first = wait_final(client, f"/v1/jobs/{client.get('/v1/jobs').json()['items'][-1]['id']}")
        assert first["state"] == "succeeded", first
        assert first["options"] == resolved_moded  # the stored row, read back after the run
        assert [j["options"]["operator"] for j in client.get("/v1/jobs").json()["items"]] == ["bt2408", NAME]


def test_wrong_multipart_field_names_the_expected_one(live: Any) -> None:
    body = np.random.default_rng(0).bytes(100_000)  # what it holds does not matter: over 64 KiB does
    with httpx.Client(base_url=live.url, timeout=60) as client:
        as_file = client.post("/v1/jobs", files={"video": ("clip.mp4", body, "video/mp4")})
        # a bare field (no filename), as `curl -F video=<clip.mp4` sends it
        as_field = client.post("/v1/jobs", files={"video": (None, body)})
        nothing = client.post("/v1/jobs", files={"operator": (None, b"bt2408")})
    for response in (as_file, as_field, nothing):
        assert response.status_code == 422, response.text
        assert "send the upload as the 'file' part (curl: -F file=@clip.mp4)" in response.json()["detail"]
    assert as_file.json()["detail"].startswith("multipart body has no 'file' part: 'video' carries a file;")
    assert "form field 'video' is longer than 64 KiB, too long for an option" in as_field.json()["detail"]
    assert nothing.json()["detail"].startswith("multipart body has no 'file' part (its parts: 'operator');")
    assert no_temp_files(live)


def test_concurrent_jobs_and_paging(live_factory: Any, tmp_path: Path) -> None:
    live = live_factory()  # jobs are accepted concurrently and run one at a time (ITM_JOB_CONCURRENCY=1)
    clips = [make_clip(tmp_path / f"c{i}.mp4", frames=4 + i) for i in range(3)]

    def submit(clip: Path) -> str:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            response = client.post("/v1/jobs?preset=ultrafast", content=clip.read_bytes())
            assert response.status_code == 202, response.text
            return str(response.headers["location"])

    with ThreadPoolExecutor(3) as pool:
        locations = list(pool.map(submit, clips))
    with httpx.Client(base_url=live.url, timeout=60) as client:
        jobs = [wait_final(client, loc) for loc in locations]
        assert [j["state"] for j in jobs] == ["succeeded"] * 3
        assert sorted(j["progress"]["frames_done"] for j in jobs) == [4, 5, 6]
        first = client.get("/v1/jobs", params={"limit": 2}).json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        second = client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert len(second["items"]) == 1 and second["next_cursor"] is None
        ids = [j["id"] for j in first["items"] + second["items"]]
        assert sorted(ids) == sorted(j["id"] for j in jobs)
    assert live.sample("itm_jobs", {"state": "succeeded"}) == 3


def test_delete_cancels_running_job_and_removes_files(live_factory: Any, tmp_path: Path) -> None:
    gate = Gate()
    live = live_factory(converter=gate)
    clip = make_clip(tmp_path / "in.mp4")
    with httpx.Client(base_url=live.url, timeout=60) as client:
        location = client.post("/v1/jobs", content=clip.read_bytes()).headers["location"]
        assert gate.started.wait(60)
        assert client.get(location).json()["state"] == "running"
        assert client.get(f"{location}/result").status_code == 409
        assert client.delete(location).status_code == 204
        job = client.get(location).json()
        assert job["state"] == "cancelled"
        job_dir = live.settings.data_dir / "jobs" / job["id"]
        assert not job_dir.exists()
        # Deleting a finished (cancelled) job removes it entirely.
        assert client.delete(location).status_code == 204
        assert client.get(location).status_code == 404
        assert client.delete(location).status_code == 404


def test_restart_resumes_queued_and_running_jobs(live_factory: Any, tmp_path: Path) -> None:
    gate = Gate()
    live = live_factory(converter=gate, job_concurrency=1)
    clips = [make_clip(tmp_path / f"c{i}.mp4") for i in range(2)]
    with httpx.Client(base_url=live.url, timeout=60) as client:
        running = client.post("/v1/jobs?preset=ultrafast", content=clips[0].read_bytes()).headers["location"]
        assert gate.started.wait(60)
        queued = client.post("/v1/jobs?preset=ultrafast", content=clips[1].read_bytes()).headers["location"]
        assert client.get(running).json()["state"] == "running"
        assert client.get(queued).json()["state"] == "queued"
    live.stop()  # graceful: the running job is cancelled and put back in the queue
    db = sqlite3.connect(live.settings.data_dir / "jobs.sqlite3")
    states = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    db.close()
    assert sorted(states.values()) == ["queued", "queued"]

    again = live_factory()
    with httpx.Client(base_url=again.url, timeout=60) as client:
        for location in (running, queued):
            job = wait_final(client, location)
            assert job["state"] == "succeeded", job
            assert client.get(job["result_url"]).status_code == 200


def test_crash_recovery_reruns_once_then_fails_with_reason(live_factory: Any, tmp_path: Path) -> None:
    gate = Gate()
    live = live_factory(converter=gate)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        first = client.post("/v1/jobs?preset=ultrafast", content=make_clip(tmp_path / "a.mp4").read_bytes())
        assert gate.started.wait(60)
        second = client.post("/v1/jobs?preset=ultrafast", content=make_clip(tmp_path / "b.mp4").read_bytes())
    live.stop()
    # Make the store look like a crash left both running: one on its first attempt, one already retried.
    db = sqlite3.connect(live.settings.data_dir / "jobs.sqlite3")
    db.execute("UPDATE jobs SET state = 'running', attempts = 1 WHERE id = ?", (first.json()["id"],))
    db.execute("UPDATE jobs SET state = 'running', attempts = 2 WHERE id = ?", (second.json()["id"],))
    db.commit()
    db.close()

    again = live_factory()
    with httpx.Client(base_url=again.url, timeout=60) as client:
        rerun = wait_final(client, first.headers["location"])
        failed = wait_final(client, second.headers["location"])
    assert rerun["state"] == "succeeded"
    assert failed["state"] == "failed"
    assert "server stopped while the job ran" in failed["error"]
    assert not (again.settings.data_dir / "jobs" / failed["id"] / "input.mp4").exists()


def test_results_expire_after_ttl(live_factory: Any, tmp_path: Path) -> None:
    live = live_factory(job_ttl_s=0.5)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        clip = make_clip(tmp_path / "a.mp4").read_bytes()
        response = client.post("/v1/jobs?preset=ultrafast", content=clip)
        location = response.headers["location"]
        job = wait_final(client, location)
        assert job["state"] == "succeeded"
        job_dir = live.settings.data_dir / "jobs" / job["id"]
        live.wait_for(lambda: client.get(location).status_code == 404)
    assert not job_dir.exists()


def test_in_process_jobs_share_the_batcher(live_factory: Any, tmp_path: Path) -> None:
    live = live_factory(job_isolation=False)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        clip = make_clip(tmp_path / "a.mp4", frames=8).read_bytes()
        response = client.post("/v1/jobs?preset=ultrafast", content=clip)
        job = wait_final(client, response.headers["location"])
    assert job["state"] == "succeeded", job
    assert live.sample("itm_frames_total", {"endpoint": "jobs", "operator": "bt2446a"}) == 8
    assert live.sample("itm_batch_size_sum") >= 8  # the job's frames went through the shared batcher
    for stage in ("decode", "postprocess", "encode"):  # the job's own stages reach itm_stage_seconds
        assert live.sample("itm_stage_seconds_count", {"stage": stage}) >= 1, stage
    for stage in ("decode", "encode"):  # only the job times these: once per frame, not per batch
        assert live.sample("itm_stage_seconds_count", {"stage": stage}) == 8, stage
