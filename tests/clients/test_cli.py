import re
from pathlib import Path
from typing import Any

import pytest

from clients.cli import main

Capsys = pytest.CaptureFixture[str]


def test_convert_then_jobs(server: Any, clip: Path, tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "out.mkv"
    code = main(["convert", server.url, str(clip), str(out), "--container", "mkv", "--poll", "0.05"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML magic: a Matroska file
    assert "upload" in captured.err and "download" in captured.err  # tqdm bars go to stderr
    summary, last = captured.out.strip().splitlines()[-2:]
    # the options the server resolved (none were given but the container), then time and speed
    assert re.search(r"operator \w+.*, peak \d+ cd/m², hevc crf \d+ preset \w+, mkv$", summary), summary
    assert "default" not in summary
    assert re.fullmatch(r"done in \d+\.\d s \(\d+\.\d fps, upload to download\)", last), last
    assert main(["jobs", server.url, "--all"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:2] == ["ID", "STATE"] and "OPERATOR" in listing[0]
    assert any("succeeded" in line and "clip.mp4" in line for line in listing[1:])


def test_stream_prints_fps_latency_and_drops(server: Any, clip: Path, capsys: Capsys) -> None:
    assert main(["stream", server.url, str(clip), "--mode", "lossless", "--credits", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("stream ") and "64x48 lossless" in lines[0]
    total = lines[-1]
    assert total.startswith("total:") and "fps" in total and "latency p50" in total
    assert total.endswith("drops 0")


def test_errors_are_one_line(server: Any, tmp_path: Path, capsys: Capsys) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"junk" * 64)
    assert main(["convert", server.url, str(junk), str(tmp_path / "o.mp4"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("itmstream-client: error: 4")
    assert main(["cancel", server.url, "missing"]) == 1
    with pytest.raises(SystemExit) as info:
        main(["convert"])
    assert info.value.code == 2
