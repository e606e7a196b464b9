"""Settings: env var names, defaults, validation, immutability, caching."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings, get_settings


def test_defaults_are_the_embedded_loopback_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ITM_HOST", "ITM_PORT", "ITM_DATA_DIR", "ITM_API_KEYS", "ITM_ALLOW_ANONYMOUS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8000, Path("data"))
    assert settings.workers >= 1
    assert not settings.auth_enabled
    assert settings.allow_anonymous is False  # serving beyond loopback without keys is an explicit choice
    assert settings.max_queue_delay_s == settings.max_queue_delay_ms / 1000


def test_env_vars_with_itm_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ITM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ITM_PORT", "9001")
    monkeypatch.setenv("ITM_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("ITM_API_KEYS", " k1 , k2 ,")
    monkeypatch.setenv("ITM_DEFAULT_OPERATOR", "bt2408")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.port == 9001
    assert settings.max_batch_size == 8
    assert settings.api_keys == ("k1", "k2")
    assert settings.auth_enabled
    assert settings.default_operator == "bt2408"


@pytest.mark.parametrize(("value", "allowed"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_allow_anonymous_from_env(monkeypatch: pytest.MonkeyPatch, value: str, allowed: bool) -> None:
    monkeypatch.setenv("ITM_ALLOW_ANONYMOUS", value)
    assert Settings().allow_anonymous is allowed


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("ITM_WORKERS", "0", "workers"),
        ("ITM_MAX_BATCH_SIZE", "0", "max_batch_size"),
        ("ITM_DEFAULT_OPERATOR", "nope", "default_operator"),
        ("ITM_DEFAULT_PEAK_NITS", "50", "default_peak_nits"),
        ("ITM_MAX_BATCH_SIZE", "65", "max_batch_size"),
        ("ITM_ALLOW_ANONYMOUS", "maybe", "allow_anonymous"),
    ],
)
def test_invalid_values_fail_at_startup(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=match):
        Settings()


def test_job_isolation_with_a_ray_address_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITM_JOB_ISOLATION", "true")
    assert Settings().job_isolation  # alone it is fine
    monkeypatch.setenv("ITM_RAY_ADDRESS", "ray://head:10001")
    both = "ITM_JOB_ISOLATION=true and ITM_RAY_ADDRESS='ray://head:10001' cannot be combined"
    with pytest.raises(ValidationError, match=both):
        Settings()
    monkeypatch.setenv("ITM_JOB_ISOLATION", "false")
    assert Settings().ray_address == "ray://head:10001"


def test_queue_must_hold_a_batch() -> None:
    with pytest.raises(ValidationError, match="queue_size"):
        Settings(max_batch_size=8, queue_size=4)


def test_settings_are_frozen() -> None:
    settings = Settings(port=1234)
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()
