"""The bad-input corpus of ``POST /v1/jobs`` over real sockets: one table row per case (docs/RELIABILITY.md).

A case is refused at upload (status + problem ``detail``), or accepted (202) and then ends in the expected
terminal state: ``failed`` with a readable error, or ``succeeded`` with a valid HDR10 file. After every case
the server must be healthy with no job left queued/running and no temporary file left in its data dir.
"""

import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from av.video.reformatter import ColorTrc

from service.jobs.probe import MAX_FRAME_RATE
from tests.adversarial import media
from tests.adversarial.conftest import (
    MAX_DURATION_S,
    UPLOAD_LIMIT,
    assert_hdr10,
    assert_healthy_and_clean,
    problem,
    wait_terminal,
)
from tests.service.conftest import LiveServer

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Upload:
    """One ``POST /v1/jobs``: a raw body, or multipart with the body in ``part`` (None: no file part)."""

    body: bytes
    filename: str = "clip.mp4"
    content_type: str | None = "application/octet-stream"
    multipart: bool = False
    part: str | None = "file"
    fields: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=lambda: {"preset": "ultrafast"})

    def send(self, http: httpx.Client) -> httpx.Response:
        """POST it the way a client of this kind would."""
        if not self.multipart:
            headers = {"X-Filename": self.filename}
            if self.content_type is not None:
                headers["Content-Type"] = self.content_type
            return http.post("/v1/jobs", content=self.body, headers=headers, params=self.params)
        files = {self.part: (self.filename, self.body, "video/mp4")} if self.part else {"x": ("x", b"x")}
        return http.post("/v1/jobs", files=files, data=self.fields, params=self.params)


def raw(build: Callable[[Path], bytes], filename: str = "clip.mp4", **kw: Any) -> Callable[[Path], Upload]:
    """A case whose body a media builder makes (a raw upload unless ``multipart=True``)."""
    return lambda tmp: Upload(build(tmp), filename, **kw)


def fixed(data: bytes, filename: str = "clip.mp4", **kw: Any) -> Callable[[Path], Upload]:
    """A case whose body does not depend on the scratch directory."""
    return lambda _: Upload(data, filename, **kw)


@dataclass(frozen=True)
class Case:
    """A row of the corpus: what is sent, the status, the message fragment, and the job's final state.

    ``final`` is None for refusals (``message`` is then in the problem ``detail``); for accepted uploads
    it is the terminal state, and ``message`` must appear in the job's ``error`` when it failed. ``output``
    checks a succeeded job's file against the upload, beyond it being valid HDR10.
    """

    name: str
    build: Callable[[Path], Upload]
    status: int
    message: str = ""
    final: str | None = None
    output: Callable[[Path, Path], None] | None = None


def _frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def same_frame_times(src: Path, out: Path) -> None:
    """Every frame keeps its presentation time (VFR and negative timestamps survive)."""
    assert [round(float(f.time or 0), 3) for f in _frames(out)] == [
        round(float(f.time or 0), 3) for f in _frames(src)
    ]


def same_rotation(src: Path, out: Path) -> None:
    """The display matrix survives: a phone video still shows upright."""
    rotation = _frames(src)[0].rotation
    assert rotation != 0 and _frames(out)[0].rotation == rotation


def pq(tmp: Path) -> bytes:
    return media.clip(tmp, frames=2, colour={"color_trc": ColorTrc.SMPTE2084})


def hlg(tmp: Path) -> bytes:
    return media.clip(tmp, frames=2, colour={"color_trc": ColorTrc.ARIB_STD_B67})


CASES = [
    # -- not video at all -----------------------------------------------------------------------------
    Case("empty", fixed(b""), 422, "empty (0 bytes)"),
    Case("random_bytes", raw(media.random_bytes), 422, "not a readable video"),
    Case("text_renamed_mp4", raw(media.text_as_mp4), 422, "not a readable video"),
    Case("audio_only", raw(media.audio_only, "song.m4a"), 415, "no video stream"),
    Case("png_still", fixed(media.still("PNG"), "photo.png"), 415, "still image"),
    Case("jpeg_still", fixed(media.still("JPEG"), "photo.jpg"), 415, "still image"),
    Case("unknown_codec", raw(media.unknown_codec, "clip.mkv"), 415, "cannot decode"),
    # -- damaged --------------------------------------------------------------------------------------
    Case("truncated_mp4_moov_at_end", raw(media.truncated_mp4_moov_at_end), 422, "truncated or corrupt"),
    Case("truncated_mp4_faststart", raw(media.truncated_mp4_faststart), 422, "truncated or corrupt"),
    Case("truncated_mkv", raw(media.truncated_mkv, "clip.mkv"), 422, "found 0.04 s of the 1.60 s"),
    Case(
        "corrupt_packet_mid_stream", raw(media.corrupt_packet, "clip.mkv"), 202, "does not decode", "failed"
    ),
    Case("container_without_frames", raw(media.no_frames), 415, "holds no streams"),
    Case(
        "truncated_raw_h264",
        raw(media.truncated_raw_h264, "clip.h264"),
        202,
        "decodes only in part",
        "failed",
    ),
    Case("frame_size_changes", raw(media.size_change, "clip.h264"), 202, "changes mid-stream", "failed"),
    # -- sizes ----------------------------------------------------------------------------------------
    Case(
        "1x1",
        raw(lambda t: media.clip(t, "1.mkv", codec="ffv1", pix_fmt="yuv444p", width=1, height=1)),
        415,
        "1x1",
    ),
    Case(
        "odd_65x49",
        raw(lambda t: media.clip(t, "o.mkv", codec="ffv1", pix_fmt="yuv444p", width=65, height=49)),
        415,
        "even width and height",
    ),
    Case("too_narrow_48x48", raw(lambda t: media.clip(t, width=48, height=48)), 415, "at least 64x16"),
    Case("declared_16384x16384", raw(media.declared_size(16384, 16384), "clip.avi"), 422, "frame size"),
    Case("declared_8192x8192", raw(media.declared_size(8192, 8192), "clip.avi"), 415, "8192x8192"),
    Case("tiny_file_4096x2304_bomb", raw(media.tiny_4k_bomb), 415, "4096x2304"),
    # -- time -----------------------------------------------------------------------------------------
    Case(
        "declared_too_long",
        raw(lambda t: media.clip(t, frames=int(MAX_DURATION_S * 25) + 50)),
        415,
        "the limit is",
    ),
    Case(
        "raw_h264_too_long",
        raw(lambda t: media.raw_h264(t, MAX_DURATION_S + 2), "clip.h264"),
        415,
        "the limit is",
    ),
    Case(
        "5000_fps_for_1_s",
        raw(media.high_frame_rate),
        415,
        f"more than {int(MAX_DURATION_S * MAX_FRAME_RATE)} frames",
    ),
    Case("timestamp_gap_of_a_day", raw(media.timestamp_gap, "clip.mkv"), 415, "the limit is"),
    Case("vfr", raw(media.vfr, "clip.mkv"), 202, final="succeeded", output=same_frame_times),
    Case(
        "negative_timestamps",
        raw(media.negative_timestamps, "clip.mkv"),
        202,
        final="succeeded",
        output=same_frame_times,
    ),
    Case("raw_h264_short", raw(lambda t: media.raw_h264(t, 0.2), "clip.h264"), 202, final="succeeded"),
    # -- pixel formats and tags -----------------------------------------------------------------------
    Case("rotated_phone_video", raw(media.rotated), 202, final="succeeded", output=same_rotation),
    Case("yuv422p", raw(lambda t: media.clip(t, pix_fmt="yuv422p", frames=3)), 202, final="succeeded"),
    Case("yuv444p", raw(lambda t: media.clip(t, pix_fmt="yuv444p", frames=3)), 202, final="succeeded"),
    Case("10_bit_sdr", raw(lambda t: media.clip(t, pix_fmt="yuv420p10le", frames=3)), 202, final="succeeded"),
    Case("interlaced", raw(media.interlaced), 202, final="succeeded"),
    Case("animated_gif", raw(media.animated_gif, "anim.gif"), 202, final="succeeded"),
    Case("mjpeg_single_frame_avi", raw(media.mjpeg_single_frame_avi, "one.avi"), 202, final="succeeded"),
    Case("already_hdr_pq", raw(pq), 422, "HDR already"),
    Case("already_hdr_hlg", raw(hlg), 422, "HDR already"),
    # -- the request itself ---------------------------------------------------------------------------
    Case(
        "content_type_json_body",
        fixed(b'{"video": "nope"}', content_type="application/json"),
        422,
        "not a readable video",
    ),
    Case(
        "content_type_form_urlencoded_valid_clip",  # curl --data-binary's default type: sniffed, accepted
        raw(media.clip, content_type="application/x-www-form-urlencoded"),
        202,
        final="succeeded",
    ),
    Case(
        "multipart_without_boundary",
        raw(media.clip, content_type="multipart/form-data"),
        400,
        "without a boundary",
    ),
    Case(
        "multipart_type_raw_body",
        raw(media.clip, content_type="multipart/form-data; boundary=xyz"),
        422,
        "not valid multipart/form-data",
    ),
    Case(
        "multipart_without_file",
        fixed(b"", multipart=True, part=None, fields={"operator": "bt2408"}),
        422,
        "no 'file' part",
    ),
    Case("multipart_empty_file", fixed(b"", multipart=True), 422, "empty (0 bytes)"),
    Case(
        "multipart_options_not_json",
        raw(media.clip, multipart=True, fields={"options": "{oops"}),
        422,
        "not valid JSON",
    ),
    Case(
        "multipart_options_nested_60000_deep",
        raw(media.clip, multipart=True, fields={"options": "[" * 60_000}),
        422,
        "nested too deeply",
    ),
    Case("option_unknown_operator", raw(media.clip, params={"operator": "magic"}), 422, "magic"),
    Case("option_crf_out_of_range", raw(media.clip, params={"crf": "99"}), 422, "crf"),
    Case("option_codec_unknown", raw(media.clip, params={"codec": "vp9"}), 422, "codec"),
    Case("declared_length_over_limit", fixed(b"\x00" * (UPLOAD_LIMIT + 1)), 413, "exceeds the limit"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_upload_case(server: LiveServer, client: httpx.Client, tmp_path: Path, case: Case) -> None:
    upload = case.build(tmp_path)
    response = upload.send(client)
    if case.final is None:
        problem(response, case.status, case.message)
    else:
        assert response.status_code == case.status == 202, response.text
        job = wait_terminal(client, response.json()["id"])
        assert job["state"] == case.final, job
        if case.final == "failed":
            assert case.message.lower() in job["error"].lower(), job["error"]
            assert client.get(f"/v1/jobs/{job['id']}/result").status_code == 409
        else:
            result = client.get(job["result_url"])
            assert result.status_code == 200
            out = tmp_path / "result.mp4"
            out.write_bytes(result.content)
            assert_hdr10(out)
            if case.output is not None:
                src = tmp_path / f"upload-{upload.filename}"
                src.write_bytes(upload.body)
                case.output(src, out)
    assert_healthy_and_clean(server)


def test_oversized_upload_is_refused_while_streaming(server: LiveServer) -> None:
    """Chunked upload without Content-Length: 413 arrives while the client is still sending."""
    total = 64 * UPLOAD_LIMIT  # far more than the limit; the client stops as soon as the answer is in
    chunk = b"\x00" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 413"), head
    assert sent < total, "the server let the whole body through before answering"
    assert_healthy_and_clean(server)


@pytest.mark.parametrize("name", ["../../../evil.mp4", "..\\..\\evil.mp4", "/etc/evil.mp4", "e\x00vil.mp4"])
def test_hostile_file_names_are_reduced_to_a_base_name(
    server: LiveServer, client: httpx.Client, tmp_path: Path, name: str
) -> None:
    """The client's file name only ever labels the job and the download; it never becomes a path."""
    response = client.post(
        "/v1/jobs", content=media.clip(tmp_path, frames=2), params={"filename": name, "preset": "ultrafast"}
    )
    assert response.status_code == 202, response.text
    job = wait_terminal(client, response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["filename"] == "evil.mp4"
    disposition = client.get(job["result_url"]).headers["content-disposition"]
    assert disposition == 'attachment; filename="evil_hdr10.mp4"', disposition
    assert not list(server.settings.data_dir.parent.rglob("evil*")), "a file was written under the name"
    assert_healthy_and_clean(server)


def test_client_vanishing_mid_upload_leaves_no_file(server: LiveServer) -> None:
    """Half of a declared body, then the connection drops: the partial upload must not stay in tmp/."""
    tmp = server.settings.data_dir / "tmp"
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % UPLOAD_LIMIT
        )
        sock.sendall(bytes(UPLOAD_LIMIT // 2))
        server.wait_for(lambda: any(tmp.glob("*.part")))  # the server is streaming it to disk
    server.wait_for(lambda: not any(tmp.iterdir()))
    assert_healthy_and_clean(server)


def test_server_is_healthy_and_converts_after_the_corpus(
    server: LiveServer, client: httpx.Client, tmp_path: Path
) -> None:
    response = client.post("/v1/jobs", content=media.clip(tmp_path, frames=2), params={"preset": "ultrafast"})
    assert response.status_code == 202, response.text
    assert wait_terminal(client, response.json()["id"])["state"] == "succeeded"
    assert_healthy_and_clean(server)
