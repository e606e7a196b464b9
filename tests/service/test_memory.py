"""The malloc arena cap: applied on glibc, and the operator's MALLOC_ARENA_MAX always wins."""

import platform
import subprocess
import sys

import pytest

from service.memory import limit_malloc_arenas

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt(M_ARENA_MAX) is glibc's; this libc has no arenas to cap")
def test_cap_is_applied_in_a_fresh_process() -> None:
    code = "from service.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_environment_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
