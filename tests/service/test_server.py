"""``itmstream serve``: an exposed address needs keys or an explicit anonymous opt-in; the mode is logged."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from service.errors import ItmError
from service.server import AuthMode, auth_mode, is_loopback

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_auth_mode_by_settings_and_host(tmp_path: Path) -> None:
    keys = Settings(data_dir=tmp_path, api_keys=("k",))
    anonymous = Settings(data_dir=tmp_path, allow_anonymous=True)
    plain = Settings(data_dir=tmp_path)
    assert auth_mode(keys, "0.0.0.0") is AuthMode.KEYS
    assert auth_mode(keys, "127.0.0.1") is AuthMode.KEYS
    assert auth_mode(plain, "127.0.0.1") is AuthMode.LOOPBACK
    assert auth_mode(anonymous, "127.0.0.1") is AuthMode.LOOPBACK  # loopback needs no opt-in
    assert auth_mode(anonymous, "0.0.0.0") is AuthMode.CHOSEN
    with pytest.raises(ItmError, match=r"'0\.0\.0\.0'") as refused:
        auth_mode(plain, "0.0.0.0")
    assert "ITM_API_KEYS" in str(refused.value) and "ITM_ALLOW_ANONYMOUS=true" in str(refused.value)


# -- the real command ------------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any ITM_* setting, plus a throwaway data dir and a quick operator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITM_")}
    env.update(ITM_DATA_DIR=str(tmp_path / "data"), ITM_DEFAULT_OPERATOR="bt2408", ITM_WORKERS="1")
    env.update(extra)
    return env


def _serve(host: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "serve", "--host", host, "--port", "0"]


def test_exposed_without_keys_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        _serve("0.0.0.0"), env=_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip()
    expected = "itmstream: error: refusing to serve on '0.0.0.0' without authentication"
    assert message.startswith(expected), message
    assert "ITM_API_KEYS=" in message and "ITM_ALLOW_ANONYMOUS=true" in message, message
    assert "Traceback" not in result.stderr and "Uvicorn running" not in result.stderr
    assert not (tmp_path / "data").exists(), "refused before creating anything"


@pytest.mark.parametrize(
    ("host", "extra", "mode"),
    [
        ("0.0.0.0", {"ITM_API_KEYS": "k1,k2"}, AuthMode.KEYS),
        ("0.0.0.0", {"ITM_ALLOW_ANONYMOUS": "true"}, AuthMode.CHOSEN),
        ("127.0.0.1", {}, AuthMode.LOOPBACK),
    ],
)
def test_starts_and_logs_its_auth_mode(
    tmp_path: Path, host: str, extra: dict[str, str], mode: AuthMode
) -> None:
    process = subprocess.Popen(
        _serve(host), env=_env(tmp_path, **extra), cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(f"{mode.value}: " in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        (port,) = {m.group(1) for line in lines if (m := re.search(r"Uvicorn running on \S+:(\d+)", line))}
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 200
        anonymous = httpx.get(f"{url}/v1/operators").status_code
        assert anonymous == (401 if mode is AuthMode.KEYS else 200)
        if mode is AuthMode.KEYS:
            keyed = httpx.get(f"{url}/v1/operators", headers={"Authorization": "Bearer k2"})
            assert keyed.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(60)
        reader.join(10)
        process.stderr.close()  # type: ignore[union-attr]
    # uvicorn drains, then re-raises the signal it caught (as PID 1 in a container, that exits 0).
    assert status == -signal.SIGTERM, "".join(lines)
    assert any("itmstream stopped" in line for line in lines), "".join(lines)
    assert sum(line.count(mode.value) for line in lines) == 1
