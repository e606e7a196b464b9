"""Disk full: the data dir is a small tmpfs, so ENOSPC is real (not a mock) and reaches FFmpeg and SQLite.

A job whose output does not fit must end ``failed`` saying so, with its partial output removed (which frees
the space again), while the server stays ready and the next job converts. An upload that does not fit must
be refused with 507 Insufficient Storage, leaving no partial file.
"""

import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from clients import Stream, StreamOptions, StreamResult
from tests.faults.conftest import (
    ServerProcess,
    assert_valid_hdr10,
    leftovers,
    noise_clip,
    submit,
    wait_final,
)
from tests.service.conftest import make_clip

pytestmark = pytest.mark.timeout(120)

MARGIN = 160 * 1024
"""Free bytes left once both uploads are in: far less than the big job's lossless output (~260 KB for pass 1
alone, twice that while pass 2 is written), far more than the small job needs (~20 KB) plus the job store's
write-ahead log."""


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _fill(path: Path, leave: int) -> None:
    """Write a filler file so that only ``leave`` bytes stay free."""
    size = _free_bytes(path.parent) - leave
    assert size > 0, "the tmpfs is too small for this test"
    with path.open("wb") as f:
        f.write(b"\0" * size)  # tmpfs allocates on write; a sparse file would not take the space


def test_job_that_runs_out_of_space_fails_cleanly_and_the_next_one_converts(
    server_factory: Callable[..., ServerProcess], tmpfs: Callable[[str, int], Path], tmp_path: Path
) -> None:
    data = tmpfs("data", 4096)
    big = noise_clip(tmp_path / "noise.mp4", frames=30)
    small = make_clip(tmp_path / "small.mp4", frames=12)
    server = server_factory(data_dir=data, job_concurrency=1)
    _fill(data / "filler", big.stat().st_size + small.stat().st_size + MARGIN)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        full = submit(client, big, crf=0)  # lossless: the output is far larger than the space left
        after = submit(client, small)
        failed = wait_final(client, full)
        assert failed["state"] == "failed", failed
        assert "no space left on device" in failed["error"].lower(), failed
        # Said in our words: not an "internal error", not the name of a hidden temporary file.
        assert "internal error" not in failed["error"] and ".encode." not in failed["error"], failed
        assert client.get(f"{full}/result").status_code == 409

        converted = wait_final(client, after)
        assert converted["state"] == "succeeded", converted
        result = tmp_path / "small_hdr10.mp4"
        result.write_bytes(client.get(converted["result_url"]).content)
        assert_valid_hdr10(result, 12)

        assert client.get("/healthz").status_code == 200 and server.ready()
        options = StreamOptions(64, 48, output="rgb10a2", credits=2, operator="bt2408")
        with Stream.connect(server.url, options) as stream:
            events = list(stream.run([np.zeros((48, 64, 3), np.uint8)] * 3))
        assert [e.seq for e in events if isinstance(e, StreamResult)] == [0, 1, 2]
    assert leftovers(data) == []
    folder = data / "jobs" / failed["id"]
    assert not folder.exists() or not any(folder.iterdir()), "the failed job's files were not removed"


def test_upload_that_does_not_fit_is_refused_with_507_and_leaves_nothing(
    server_factory: Callable[..., ServerProcess], tmpfs: Callable[[str, int], Path]
) -> None:
    data = tmpfs("data", 1024)
    server = server_factory(data_dir=data)
    body = secrets.token_bytes(2 * 1024 * 1024)  # twice the whole tmpfs
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/jobs", content=body, headers={"content-type": "application/octet-stream"})
        assert response.headers.get("content-type") == "application/problem+json", response.text
        assert response.status_code == 507, response.text
        problem = response.json()
        assert problem["status"] == 507
        assert "no space left on device" in problem["detail"].lower(), problem
        assert leftovers(data) == []
        assert not any((data / "tmp").iterdir())
        assert client.get("/healthz").status_code == 200 and server.ready()


def test_job_store_full_at_submission_is_507_and_leaves_no_folder(
    live_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """SQLite's SQLITE_FULL when the job row is inserted (the upload itself fit): 507, the upload removed.

    White-box (the insert is made to fail as SQLite does on a full disk): which write of SQLite's meets the
    last free page cannot be arranged on a real tmpfs without racing the WAL.
    """
    live = live_factory()
    jobs = live.server.itm_app.state.itm.jobs

    def full(record: object) -> None:
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        raise error

    jobs.store.insert = full
    with httpx.Client(base_url=live.url, timeout=30) as client:
        response = client.post("/v1/jobs", content=make_clip(tmp_path / "a.mp4", frames=12).read_bytes())
        assert response.status_code == 507, response.text
        assert "no space left on device" in response.json()["detail"]
    assert not any(jobs.jobs_dir.iterdir()), "the upload's job folder was left behind"
    assert leftovers(live.settings.data_dir) == []
