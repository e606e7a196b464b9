"""``ITM_*`` environment variables fuzzed: start-up either gets valid :class:`Settings` or a refusal naming
the variable, never another exception and never a value the service cannot run with (settings are "validated
once at start-up": a bad value must not surface later as a server that never becomes ready).
"""

import os
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.config import Settings

ENV_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
"""What an environment variable can hold: no NUL, no lone surrogates."""
NUMBERS = st.integers(-(2**40), 2**40).map(str) | st.floats(allow_nan=True).map(str)
VALUES = {
    "PORT": NUMBERS,
    "WORKERS": NUMBERS,
    "MAX_BATCH_SIZE": NUMBERS,
    "MAX_QUEUE_DELAY_MS": NUMBERS,
    "QUEUE_SIZE": NUMBERS,
    "UPLOAD_LIMIT_BYTES": NUMBERS,
    "MAX_WIDTH": NUMBERS,
    "MAX_HEIGHT": NUMBERS,
    "MAX_DURATION_S": NUMBERS,
    "JOB_TTL_S": NUMBERS,
    "JOB_CONCURRENCY": NUMBERS,
    "JOB_ISOLATION": st.sampled_from(["true", "false", "1", "0", "yes", "maybe"]),
    "JOB_QUEUE_SIZE": NUMBERS,
    "DEFAULT_OPERATOR": st.sampled_from(["bt2408", "bt2446a", "inverse_reinhard", "nope"]),
    "DEFAULT_MODE": st.sampled_from(["fast", "quality", "slow"]),
    "DEFAULT_PEAK_NITS": NUMBERS,
    "API_KEYS": ENV_TEXT,
    "MAX_STREAMS": NUMBERS,
    "STREAM_IDLE_TIMEOUT_S": NUMBERS,
    "STREAM_MAX_CREDITS": NUMBERS,
    "WARMUP_SIZE": st.lists(st.integers(1, 4096), min_size=2, max_size=2).map(str) | ENV_TEXT,
    "LOG_LEVEL": st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "TRACE"]),
}
"""Every field but EXTRA_OPERATORS, which imports the modules it names."""


def settings_from(env: dict[str, str]) -> Settings:
    with mock.patch.dict(os.environ, {f"ITM_{k}": v for k, v in env.items()}):
        return Settings(data_dir="/tmp/itm-fuzz-settings")


@given(st.fixed_dictionaries({}, optional=VALUES))
def test_any_environment_gives_settings_or_a_validation_error_naming_it(env: dict[str, str]) -> None:
    try:
        settings = settings_from(env)
    except ValidationError as exc:
        assert all(err["loc"] for err in exc.errors()) or exc.errors()[0]["type"] == "value_error", exc
        return
    except SettingsError as exc:  # pydantic-settings' refusal of a complex value that is not JSON
        assert "warmup_size" in str(exc) and "WARMUP_SIZE" in env, exc
        return
    assert settings.queue_size >= settings.max_batch_size
    assert all(key.strip() == key and key for key in settings.api_keys)


@pytest.mark.parametrize("size", ["[-4,8]", "[0,0]"])
def test_a_warmup_size_that_cannot_warm_anything_is_refused_at_start_up(size: str) -> None:
    with pytest.raises(ValidationError, match="warmup_size"):
        settings_from({"WARMUP_SIZE": size})
