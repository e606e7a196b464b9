"""``region_lstm`` everywhere ``mqn`` is: ``itmstream operators`` (with its modes) and ``convert``, a REST
job, ``/v1/images`` and a WebSocket stream frame, with a smoke-trained model (none is shipped yet); and,
without a model, a clear error on each path instead of a crash."""

from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from tests.models.region_lstm_smoke import needs_smoke_model, region_lstm_dir

from .learned_paths import (
    check_cli_converts_a_clip,
    check_cli_without_a_model,
    check_rest_job_and_image,
    check_rest_without_a_model,
    check_stream_frame,
)

__all__ = ["region_lstm_dir"]

pytestmark = pytest.mark.timeout(300)


def test_operators_lists_region_lstm_with_its_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    assert "region_lstm: Region-map ConvLSTM" in out
    section = out[out.index("region_lstm:") :]
    assert "peak_nits" in section and "mode" in section and "quality" in section


def test_cli_without_a_model_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITM_REGION_LSTM_DIR", str(tmp_path / "empty"))
    check_cli_without_a_model("region_lstm", tmp_path, capsys)


@needs_smoke_model
@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_cli_converts_a_clip(region_lstm_dir: Path, tmp_path: Path, mode: str) -> None:
    check_cli_converts_a_clip("region_lstm", tmp_path, "--op-param", f"mode={mode}")


@needs_smoke_model
def test_rest_job_and_image(region_lstm_dir: Path, live: Any, tmp_path: Path) -> None:
    check_rest_job_and_image("region_lstm", live, tmp_path)


@needs_smoke_model
def test_stream_frame(region_lstm_dir: Path, live: Any) -> None:
    check_stream_frame("region_lstm", live)


def test_rest_without_a_model_names_the_missing_file(
    live: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITM_REGION_LSTM_DIR", str(tmp_path / "empty"))
    check_rest_without_a_model("region_lstm", live)
