"""Job options fuzzed with a *valid* tiny video, over a real socket: what schemathesis cannot reach.

schemathesis' generated uploads never probe as video, so every job it creates is refused before it exists.
Here each example uploads the same 64x48, 4-frame clip with arbitrary options and follows the job to the end.
The contract (the create_job docstring: unusable options are 422/415): an upload is refused with a
documented problem, or accepted with 202 and then *succeeds*, its result downloadable and deletable.
"""

import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from service.jobs.models import FINAL_STATES
from tests.fuzz.openapi import SCHEMA, assert_problem
from tests.fuzz.strategies import JSON_VALUES
from tests.service.conftest import LiveServer, make_clip

X265_PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]
SVT_AV1_PRESETS = [str(p) for p in range(4, 14)]

OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "operator": st.sampled_from(["bt2408", "bt2446a", "inverse_reinhard", "mqn"]) | st.text(max_size=8),
    "mode": st.sampled_from(["fast", "quality"]) | st.text(max_size=8),
    "peak_nits": st.floats(50.0, 20000.0),
    "codec": st.sampled_from(["hevc", "av1"]) | st.text(max_size=5),
    "crf": st.integers(-3, 70),
    "preset": st.sampled_from(X265_PRESETS + SVT_AV1_PRESETS),
    "container": st.sampled_from(["mp4", "mkv", "mov"]) | st.text(max_size=4),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clip") / "tiny.mp4", frames=4, width=64, height=48).read_bytes()


def validate(response: httpx.Response, path: str, method: str) -> None:
    SCHEMA[path][method].validate_response(response)
    if response.status_code >= 400:
        assert_problem(response.status_code, response.headers["content-type"], response.content)


TRANSPORTS = ("query", "form fields", "options field")
"""The three ways create_job takes options: query parameters, one form field each, one JSON form field."""


def run_job(
    server: LiveServer, clip: bytes, options: Any, transport: str = "query"
) -> tuple[httpx.Response, dict[str, Any] | None]:
    """Upload, then follow an accepted job to a final state; (creation response, final job or None)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        if transport == "query":
            headers = {"content-type": "application/octet-stream"}
            request = client.build_request("POST", "/v1/jobs", params=options, content=clip, headers=headers)
        else:
            if transport == "form fields":
                data = {k: str(v) for k, v in options.items()}
            else:
                data = {"options": json.dumps(options)}
            request = client.build_request("POST", "/v1/jobs", data=data, files={"file": ("tiny.mp4", clip)})
        request.read()  # a multipart body is a stream; the schema validator reads the request again
        created = client.send(request)
        validate(created, "/v1/jobs", "POST")
        if created.status_code != 202:
            return created, None
        location = created.headers["location"]
        while (job := client.get(location)).json()["state"] not in FINAL_STATES:
            validate(job, "/v1/jobs/{job_id}", "GET")
            time.sleep(0.02)
        validate(job, "/v1/jobs/{job_id}", "GET")
        final: dict[str, Any] = job.json()
        if final["state"] == "succeeded":
            result = client.get(final["result_url"], headers={"range": "bytes=0-99"})
            validate(result, "/v1/jobs/{job_id}/result", "GET")
            assert result.status_code == 206 and len(result.content) == min(100, final["result_bytes"])
        deleted = client.delete(location)
        validate(deleted, "/v1/jobs/{job_id}", "DELETE")
        assert deleted.status_code == 204
        assert client.get(location).status_code == 404
        return created, final


@st.composite
def valid_options(draw: st.DrawFn) -> dict[str, Any]:
    """Options every documented rule allows (any subset given; the rest take the server's defaults)."""
    codec = draw(st.sampled_from(["hevc", "av1"]))
    full: dict[str, Any] = {
        "operator": draw(st.sampled_from(["bt2408", "bt2446a", "inverse_reinhard", "mqn"])),
        "mode": draw(st.sampled_from(["fast", "quality"])),
        "peak_nits": draw(st.floats(203.0, 10000.0)),  # inverse_reinhard needs its 203 cd/m² key below peak
        "codec": codec,
        "crf": draw(st.integers(0, 51 if codec == "hevc" else 63)),
        "preset": draw(st.sampled_from(X265_PRESETS if codec == "hevc" else SVT_AV1_PRESETS)),
        "container": draw(st.sampled_from(["mp4", "mkv", "mov"] if codec == "hevc" else ["mp4", "mkv"])),
    }
    keep = draw(st.sets(st.sampled_from(sorted(full))))
    return {k: v for k, v in full.items() if k in keep or (k == "codec" and keep & {"crf", "preset"})}


@given(options=valid_options(), transport=st.sampled_from(TRANSPORTS))
def test_valid_options_are_accepted_and_the_job_succeeds(
    fuzz_server: LiveServer, clip: bytes, options: dict[str, Any], transport: str
) -> None:
    created, final = run_job(fuzz_server, clip, options, transport)
    assert created.status_code == 202, created.text
    assert final is not None and final["state"] == "succeeded", (options, final)


@given(
    options=st.fixed_dictionaries({}, optional=OPTIONS) | JSON_VALUES, transport=st.sampled_from(TRANSPORTS)
)
def test_any_options_are_refused_with_a_problem_or_the_job_succeeds(
    fuzz_server: LiveServer, clip: bytes, options: Any, transport: str
) -> None:
    if not isinstance(options, dict):  # any JSON at all: only the options field can carry it
        transport = "options field"
    created, final = run_job(fuzz_server, clip, options, transport)
    event(f"status {created.status_code}")
    assert created.status_code in (202, 415, 422), created.text
    if final is not None:
        assert final["state"] == "succeeded", (options, final["error"])


UNHONOURABLE = [
    pytest.param({"codec": "hevc", "crf": 60}, id="hevc-crf-over-51"),
    pytest.param({"preset": "nonsense"}, id="unknown-x265-preset"),
    pytest.param({"codec": "av1", "preset": "ultrafast"}, id="x265-preset-for-av1"),
    pytest.param({"codec": "av1", "container": "mov"}, id="av1-in-mov"),
]


@pytest.mark.parametrize("options", UNHONOURABLE)
def test_options_no_conversion_can_honour_are_refused_at_upload(
    fuzz_server: LiveServer, clip: bytes, options: dict[str, Any]
) -> None:
    """What the property above first found: each was a 202 and a failed job (fixed in d93f920)."""
    created, _ = run_job(fuzz_server, clip, options)
    assert created.status_code == 422, created.text
