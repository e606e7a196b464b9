"""``expandnet`` everywhere ``mqn`` is: ``itmstream operators`` and ``convert``, a REST job, ``/v1/images``
and a WebSocket stream frame, with a smoke-trained model (none is shipped yet); and, without a model, a
clear error on each path instead of a crash."""

from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from tests.models.expandnet_smoke import expandnet_dir, needs_smoke_model

from .learned_paths import (
    check_cli_converts_a_clip,
    check_cli_without_a_model,
    check_rest_job_and_image,
    check_rest_without_a_model,
    check_stream_frame,
)

__all__ = ["expandnet_dir"]

pytestmark = pytest.mark.timeout(300)


def test_operators_lists_expandnet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    assert "expandnet: ExpandNet" in out
    assert "native resolution" in out


def test_cli_without_a_model_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path / "empty"))
    check_cli_without_a_model("expandnet", tmp_path, capsys)


@needs_smoke_model
def test_cli_converts_a_clip(expandnet_dir: Path, tmp_path: Path) -> None:
    check_cli_converts_a_clip("expandnet", tmp_path)


@needs_smoke_model
def test_rest_job_and_image(expandnet_dir: Path, live: Any, tmp_path: Path) -> None:
    check_rest_job_and_image("expandnet", live, tmp_path)


@needs_smoke_model
def test_stream_frame(expandnet_dir: Path, live: Any) -> None:
    check_stream_frame("expandnet", live)


def test_rest_without_a_model_names_the_missing_file(
    live: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITM_EXPANDNET_DIR", str(tmp_path / "empty"))
    check_rest_without_a_model("expandnet", live)
