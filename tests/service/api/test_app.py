"""App factory: health, readiness, problem details, OpenAPI, auth, metrics, operators, images."""

import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.inference.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)


def png_bytes(height: int = 12, width: int = 16) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_healthz_and_metrics_need_no_auth(client_factory: Callable[..., Any]) -> None:
    client, registry = client_factory(api_keys=("k",))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "itm_requests_total" in metrics.text
    assert registry.get_sample_value("itm_requests_total", {"route": "/healthz", "status": "200"}) == 1
    info = {"name": "bt2446a", "mode": "", "quant": "none", "version": ""}
    assert registry.get_sample_value("itm_model_info", info) == 1


def test_readyz_is_503_until_warm(
    client_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = WorkerPool.warm_up

    def held_warm_up(self: WorkerPool, *args: Any, **kwargs: Any) -> None:
        release.wait(60)
        original(self, *args, **kwargs)

    monkeypatch.setattr(WorkerPool, "warm_up", held_warm_up)
    client, _ = client_factory(ready=False)
    before = client.get("/readyz")
    assert before.status_code == 503
    assert before.headers["content-type"] == "application/problem+json"
    assert before.json()["detail"] == "warming up operators"
    assert before.headers["Retry-After"] == "1"
    assert client.get("/healthz").status_code == 200  # liveness does not wait for warm-up
    release.set()
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("auth_on", [False, True])
def test_bearer_auth(client_factory: Callable[..., Any], auth_on: bool) -> None:
    client, _ = client_factory(api_keys=("s3cret", "other") if auth_on else ())
    response = client.get("/v1/operators")
    if not auth_on:
        assert response.status_code == 200
        return
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/v1/operators", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer other"}).status_code == 200
    assert client.get("/v1/operators", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_problem_details(client: Any) -> None:
    missing = client.get("/v1/jobs/doesnotexist")
    assert missing.status_code == 404
    body = missing.json()
    assert body["type"] == "about:blank" and body["status"] == 404 and body["title"] == "Not Found"
    assert body["instance"] == "/v1/jobs/doesnotexist" and "doesnotexist" in body["detail"]
    invalid = client.get("/v1/jobs", params={"limit": 0})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert invalid.json()["errors"][0]["loc"] == ["query", "limit"]
    bad_cursor = client.get("/v1/jobs", params={"cursor": "!!"})
    assert bad_cursor.status_code == 422
    assert client.get("/nowhere").status_code == 404


def test_openapi_is_complete(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/operators",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/result",
        "/v1/images",
    ):
        assert path in paths, path
    assert {"post", "get"} <= set(paths["/v1/jobs"])
    assert "delete" in paths["/v1/jobs/{job_id}"]
    components = schema["components"]["schemas"]
    for model in ("Job", "JobList", "JobOptions", "JobProgress", "Problem", "OperatorOut"):
        assert model in components
    assert "multipart/form-data" in paths["/v1/jobs"]["post"]["requestBody"]["content"]


def test_operators_lists_classical_ones(client: Any) -> None:
    names = {op["name"] for op in client.get("/v1/operators").json()}
    assert {"bt2408", "bt2446a", "inverse_reinhard"} <= names


def test_image_to_pq_png_with_cicp(client_factory: Callable[..., Any]) -> None:
    client, registry = client_factory()
    response = client.post("/v1/images", content=png_bytes(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (16, 12)
    assert image.mode in ("I;16", "I;16B", "RGB") or image.info  # 16-bit RGB PNG decodes in limited modes
    assert b"cICP" in response.content and b"cICP\x09\x10\x00\x01" in response.content
    assert registry.get_sample_value("itm_frames_total", {"endpoint": "images", "operator": "bt2446a"}) == 1


def test_image_to_exr_by_accept_and_query(client: Any) -> None:
    by_accept = client.post("/v1/images", content=png_bytes(), headers={"Accept": "image/x-exr"})
    by_query = client.post("/v1/images?format=exr", files={"file": ("x.png", png_bytes(), "image/png")})
    for response in (by_accept, by_query):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/x-exr"
        assert response.content[:4] == b"\x76\x2f\x31\x01"  # OpenEXR magic
    assert 'filename="x_hdr.exr"' in by_query.headers["content-disposition"]


def test_image_errors(client_factory: Callable[..., Any]) -> None:
    client, _ = client_factory(upload_limit_bytes=64)
    assert client.post("/v1/images", content=b"").status_code == 422
    too_big = client.post("/v1/images", content=png_bytes())
    assert too_big.status_code == 413
    assert client.post("/v1/images", content=b"not an image").status_code == 422
    assert client.post("/v1/images?format=tiff", content=b"x").status_code == 422
    assert client.post("/v1/images?operator=nope", content=b"x").status_code == 422
    leftovers = list((client.app.state.itm.settings.data_dir / "tmp").iterdir())
    assert leftovers == []


@pytest.mark.parametrize(
    ("name", "quant", "version"),
    [
        ("expandnet", "int8+float", "expandnet_v1 (format 1)"),
        ("singlehdr", "int8+float", "singlehdr_v1 (format 1)"),
        ("region_lstm", "int8+float", "region_lstm_v1 (format 1)"),
        ("bt2446a", "none", ""),
        ("inverse_reinhard", "none", ""),
    ],
)
def test_model_info_labels_of_every_operator(
    name: str, quant: str, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.app import model_quant, model_version

    # A learned operator's labels come from the <name>.json where it reads its model (ITM_<NAME>_DIR).
    for learned in ("expandnet", "singlehdr", "region_lstm"):
        meta = {"model": learned, "version": 1, "training": {"run": f"{learned}_v1", "steps": 4000}}
        (tmp_path / f"{learned}.json").write_text(json.dumps(meta))
        monkeypatch.setenv(f"ITM_{learned.upper()}_DIR", str(tmp_path))
    assert (model_quant(name), model_version(name)) == (quant, version)


def test_model_version_of_an_untrained_export_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.app import model_version

    (tmp_path / "expandnet.json").write_text(json.dumps({"model": "expandnet", "training": None}))
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path))
    assert model_version("expandnet") == "unknown (format 1)"


def test_default_operator_is_the_bundled_model(client_factory: Callable[..., Any]) -> None:
    from service.operators import available_operators

    if "mqn" not in {info.name for info in available_operators()}:
        pytest.skip("mqn operator (LiteRT runtime or model) not installed")
    client, registry = client_factory(default_operator="mqn", default_mode="fast")
    from service.app import model_version

    info = {"name": "mqn", "mode": "fast", "quant": "int8+float", "version": model_version("mqn")}
    assert info["version"].startswith("mqn_v38")
    assert registry.get_sample_value("itm_model_info", info) == 1
    response = client.post("/v1/images", content=png_bytes(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200
    assert registry.get_sample_value("itm_frames_total", {"endpoint": "images", "operator": "mqn"}) == 1
