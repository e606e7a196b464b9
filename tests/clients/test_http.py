import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import APIError, AsyncClient, Client, Job, JobFailedError, JobOptions, JobState


def test_submit_wait_download_with_progress(server: Any, clip: Path, tmp_path: Path) -> None:
    uploaded: list[tuple[int, int | None]] = []
    seen: list[Job] = []
    downloaded: list[tuple[int, int | None]] = []
    with Client(server.url) as api:
        job = api.submit(clip, JobOptions(operator="bt2408", crf=30), on_upload=lambda *a: uploaded.append(a))
        assert job.state in (JobState.QUEUED, JobState.RUNNING)
        assert job.options["operator"] == "bt2408"
        done = api.wait(job.id, on_progress=seen.append, poll_s=0.05, timeout=120)
        out = api.download(job.id, tmp_path / "out.mp4", on_progress=lambda *a: downloaded.append(a))
    size = clip.stat().st_size
    assert uploaded[-1] == (size, size)
    assert seen[-1].state is JobState.SUCCEEDED and done.progress.frames_done == 12
    assert out.read_bytes()[4:8] == b"ftyp"
    assert downloaded[-1] == (out.stat().st_size, out.stat().st_size) == (done.result_bytes,) * 2
    assert not (tmp_path / "out.mp4.part").exists()


def test_download_resumes_from_partial_file_with_range(server: Any, clip: Path, tmp_path: Path) -> None:
    ranges: list[str | None] = []

    def record(request: httpx.Request) -> None:
        ranges.append(request.headers.get("range"))

    with Client(server.url) as api:
        job = api.wait(api.submit(clip).id, poll_s=0.05, timeout=120)
        full = api.download(job.id, tmp_path / "full.mp4").read_bytes()
        part = tmp_path / "resumed.mp4.part"
        part.write_bytes(full[:1000])
        api.http.event_hooks["request"] = [record]
        progress: list[int] = []
        resumed = api.download(job.id, tmp_path / "resumed.mp4", on_progress=lambda n, _t: progress.append(n))
        # A .part file longer than the result (a different file) is refused with 416 and started over.
        (tmp_path / "again.mp4.part").write_bytes(full + b"junk")
        again = api.download(job.id, tmp_path / "again.mp4")
        # A .part file that is already complete is only moved into place.
        (tmp_path / "done.mp4.part").write_bytes(full)
        done = api.download(job.id, tmp_path / "done.mp4")
    assert resumed.read_bytes() == full == again.read_bytes() == done.read_bytes()
    # resumed: 1 request; again: 416 then a full GET; done: a single 416 ("bytes */N" = what it has).
    assert ranges == ["bytes=1000-", f"bytes={len(full) + 4}-", None, f"bytes={len(full)}-"]
    assert progress[0] > 1000 and progress[-1] == len(full)


def test_list_iterate_and_cancel(server: Any, clip: Path) -> None:
    with Client(server.url) as api:
        ids = [api.submit(clip).id for _ in range(3)]
        page = api.list(limit=2)
        assert len(page.items) == 2 and page.next_cursor
        assert set(ids) <= {job.id for job in api.iter_jobs(page_size=2)}
        api.cancel(ids[-1])
        with pytest.raises(JobFailedError, match="cancelled"):
            api.wait(ids[-1], poll_s=0.05, timeout=60)
        for job_id in ids[:-1]:
            api.wait(job_id, poll_s=0.05, timeout=120)
            api.cancel(job_id)  # a finished job is removed
            with pytest.raises(APIError) as info:
                api.get(job_id)
            assert info.value.status == 404 and "does not exist" in info.value.detail


def test_problem_details_become_api_errors(server: Any, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with Client(server.url) as api:
        with pytest.raises(APIError) as info:
            api.submit(junk)
        assert info.value.status in (415, 422)
        with pytest.raises(APIError) as info:
            api.download("nope", tmp_path / "x.mp4")
        assert info.value.status == 404
        with pytest.raises(APIError, match="peak_nits"):
            api.submit(junk, JobOptions(peak_nits=5.0))


def test_auth_header_is_sent(server_factory: Any, clip: Path) -> None:
    live = server_factory(api_keys=("k1",))
    with Client(live.url) as anonymous, pytest.raises(APIError) as info:
        anonymous.list()
    assert info.value.status == 401
    with Client(live.url, api_key="k1") as api:
        assert api.list().items == []
        assert api.ready()


def test_convert_image_returns_pq_png(server: Any, tmp_path: Path) -> None:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 128, np.uint8)).save(buffer, format="PNG")
    with Client(server.url) as api:
        png = api.convert_image(buffer.getvalue(), options=JobOptions(operator="bt2446a", codec="hevc"))
        names = [op.name for op in api.operators()]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"cICP" in png
    assert {"bt2408", "bt2446a"} <= set(names)


def test_async_client_round_trip(server: Any, clip: Path, tmp_path: Path) -> None:
    async def scenario() -> tuple[Job, bytes, list[str]]:
        async with AsyncClient(server.url) as api:
            sent: list[int] = []
            job = await api.submit(clip, on_upload=lambda n, _t: sent.append(n))
            done = await api.wait(job.id, poll_s=0.05, timeout=120)
            part = tmp_path / "a.mp4.part"
            async with api.http.stream("GET", f"/v1/jobs/{job.id}/result") as response:
                head = b""
                async for chunk in response.aiter_bytes():
                    head += chunk
            part.write_bytes(head[:500])
            out = await api.download(job.id, tmp_path / "a.mp4")
            assert sent[-1] == clip.stat().st_size
            page = await api.list()
            await api.cancel(job.id)
            return done, out.read_bytes(), [j.id for j in page.items]

    done, data, ids = asyncio.run(scenario())
    assert done.state is JobState.SUCCEEDED and len(data) == done.result_bytes and done.id in ids


class Gate:
    """A converter that holds each job in ``running`` until released, then converts for real."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()

    def __call__(
        self, src: Path, dst: Path, operator: Any, options: Any, *, progress: Any, cancel: Any
    ) -> Any:
        from service.errors import JobCancelledError
        from service.pipeline import convert_video

        while not self.release.is_set():
            if cancel.wait(0.01):
                raise JobCancelledError("cancelled")
        return convert_video(src, dst, operator, options, progress=progress, cancel=cancel)


def test_overloaded_submit_is_retried_after_retry_after(server_factory: Any, clip: Path) -> None:
    import threading

    gate = Gate()
    live = server_factory(converter=gate, job_concurrency=1, job_queue_size=1)
    statuses: list[int] = []
    with Client(live.url, retries=0) as strict, Client(live.url, retries=50, max_backoff_s=0.1) as patient:
        strict.http.event_hooks["response"] = [lambda r: statuses.append(r.status_code)]
        running = strict.submit(clip)
        deadline = time.monotonic() + 30
        while strict.get(running.id).state is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        strict.submit(clip)  # fills the queue of one
        with pytest.raises(APIError) as info:
            strict.submit(clip)
        assert info.value.status == 503 and info.value.retry_after_s
        patient.http.event_hooks["response"] = [lambda r: statuses.append(r.status_code)]
        threading.Timer(0.5, gate.release.set).start()
        third = patient.submit(clip)
        assert patient.wait(third.id, poll_s=0.05, timeout=120).state is JobState.SUCCEEDED
    assert statuses.count(503) >= 2  # the strict client's and at least one retried attempt
