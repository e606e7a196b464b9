import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from av.video.reformatter import ColorTrc
from PIL import Image

from service.cli import main

from .conftest import ffprobe, first_frame_side_data, make_clip

REPO = Path(__file__).resolve().parents[2]


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    """One file per failure the CLI must explain in one line."""
    rng = np.random.default_rng(1)
    files = {}
    files["empty"] = tmp / "empty.mp4"
    files["empty"].touch()
    files["random"] = tmp / "random.mp4"
    files["random"].write_bytes(rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    good = make_clip(tmp / "good.mp4", frames=30)
    files["truncated_mp4"] = tmp / "truncated.mp4"  # moov at the end: cut off
    files["truncated_mp4"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fast = tmp / "fast.mp4"  # moov first: opens fine, then runs out of samples
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(good), "-c", "copy", "-movflags", "+faststart", str(fast)],
        check=True,
    )
    files["truncated_faststart"] = tmp / "truncated_faststart.mp4"
    files["truncated_faststart"].write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    fast.unlink()
    mkv = make_clip(tmp / "good.mkv", frames=40)
    files["truncated_mkv"] = tmp / "truncated.mkv"  # decodes short without an FFmpeg error
    files["truncated_mkv"].write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    good.unlink()
    mkv.unlink()
    audio = make_clip(tmp / "with_audio.mp4", audio=True)
    files["audio_only"] = tmp / "audio_only.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(audio), "-vn", "-c:a", "copy", str(files["audio_only"])],
        check=True,
    )
    audio.unlink()
    ffv1 = make_clip(tmp / "ffv1.mkv", codec="ffv1")
    files["unknown_codec"] = tmp / "unknown_codec.mkv"
    files["unknown_codec"].write_bytes(ffv1.read_bytes().replace(b"V_FFV1", b"V_QQQQ"))
    ffv1.unlink()
    files["odd_size"] = make_clip(tmp / "odd.mkv", codec="ffv1", pix_fmt="yuv444p", width=63, height=47)
    files["already_hdr"] = make_clip(tmp / "pq.mp4", colour={"color_trc": ColorTrc.SMPTE2084})
    return files


EXPECTED = {
    "empty": "empty (0 bytes)",
    "random": "not a readable video",
    "truncated_mp4": "truncated or corrupt",
    "truncated_mkv": "truncated or corrupt",
    "truncated_faststart": "truncated or corrupt",
    "audio_only": "no video stream",
    "unknown_codec": "codec this build cannot decode",
    "odd_size": "needs even width and height",
    "already_hdr": "HDR already",
}


def test_bad_inputs_give_one_line_and_no_output(tmp_path, capsys):
    pytest.importorskip("shutil").which("ffmpeg") or pytest.skip("ffmpeg not installed")
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for case, path in _bad_inputs(inputs).items():
        code = main(["convert", str(path), str(out / f"{case}.mp4"), "-q"])
        err = capsys.readouterr().err
        assert code == 1, case
        assert err.count("\n") == 1 and err.startswith("itmstream: error: "), (case, err)
        assert EXPECTED[case] in err, (case, err)
        assert list(out.iterdir()) == [], case


def test_entry_point_exit_codes_and_usage_errors(tmp_path):
    env_cmd = [sys.executable, "-m", "service.cli"]
    empty = tmp_path / "empty.mkv"
    empty.touch()
    run = subprocess.run(
        [*env_cmd, "convert", str(empty), str(tmp_path / "o.mkv")], capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0 and "empty" in run.stderr
    run = subprocess.run([*env_cmd, "convert", str(empty)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    run = subprocess.run(
        [*env_cmd, "convert", str(empty), str(tmp_path / "o.avi")], capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 1 and "suffix '.avi'" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mkv"]


def test_convert_av1_with_params(tmp_path, capsys):
    src = make_clip(tmp_path / "src.mp4", frames=10, audio=True)
    dst = tmp_path / "hdr.mkv"
    code = main(
        [
            "convert",
            str(src),
            str(dst),
            "--codec",
            "av1",
            "--crf",
            "35",
            "--preset",
            "12",
            "--operator",
            "inverse_reinhard",
            "--op-param",
            "key_nits=180",
            "--peak",
            "2000",
        ]
    )
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "10 frames" in err and "MaxCLL" in err
    # what actually ran, then wall time and speed as the last line
    assert "operator inverse_reinhard (peak_nits=2000, key_nits=180" in err
    assert re.fullmatch(r"done in \d+\.\d s \(\d+\.\d fps\)", err.strip().splitlines()[-1])
    side = first_frame_side_data(dst)
    assert Fraction(side["Mastering display metadata"]["max_luminance"]) == 2000  # the --peak
    streams = ffprobe(dst, "-show_streams")["streams"]
    assert [s["codec_type"] for s in streams] == ["video", "audio"]


def test_bad_operator_and_param(tmp_path, capsys):
    src = make_clip(tmp_path / "src.mp4", frames=2)
    assert main(["convert", str(src), str(tmp_path / "o.mp4"), "--operator", "nope"]) == 1
    assert "operator 'nope' is not known" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.mp4"), "--op-param", "gain=2"]) == 1
    assert "does not take ['gain']" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.mp4"), "--peak", "50"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.mp4"]


def test_operators_lists_params(capsys):
    assert main(["operators"]) == 0
    out = capsys.readouterr().out
    assert "bt2446a:" in out and "key_nits (default 203.0" in out


def test_image_many_inputs_one_process(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (5, 3), (255, 255, 255)).save(src / "a.png")
    Image.new("RGB", (4, 4), (128, 64, 32)).save(src / "b.jpg")
    extra = tmp_path / "c.png"
    Image.new("RGBA", (3, 3), (10, 20, 30, 40)).save(extra)
    out = tmp_path / "out"
    out.mkdir()
    code = main(
        ["image", str(src), str(extra), "--out-dir", str(out), "--format", "png", "--operator", "bt2408"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert "alpha channel dropped" in err
    # single IN OUT form, EXR
    assert main(["image", str(src / "a.png"), str(tmp_path / "a.exr"), "-q"]) == 0
    assert (tmp_path / "a.exr").is_file()


def test_image_out_dir_is_created(tmp_path, capsys):
    src = tmp_path / "x.png"
    Image.new("RGB", (4, 2), (200, 100, 50)).save(src)
    out = tmp_path / "new" / "dir"
    assert main(["image", str(src), "--out-dir", str(out), "--format", "png", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.png"]
    # nothing is created when the inputs are unusable
    assert main(["image", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "other")]) == 1
    assert not (tmp_path / "other").exists()
    # a file in the way is named
    (tmp_path / "file").touch()
    assert main(["image", str(src), "--out-dir", str(tmp_path / "file")]) == 1
    assert "exists and is not a directory" in capsys.readouterr().err


def test_image_errors(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert main(["image", str(bad), str(tmp_path / "x.exr")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an image" in err
    assert main(["image", str(bad), str(tmp_path / "x.tif")]) == 1
    assert "suffix '.tif'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]


def test_colour_overrides_mastering_primaries_and_rgb_input(tmp_path, capsys):
    white = np.full((48, 64, 3), 255, np.uint8)
    rgb_src = make_clip(tmp_path / "rgb.mkv", codec="libx264rgb", pix_fmt="rgb24", rgb=white)
    dst = tmp_path / "o.mkv"
    assert (
        main(["convert", str(rgb_src), str(dst), "--operator", "bt2408", "--mastering-primaries", "bt2020"])
        == 0
    )
    # RGB input, no matrix: white lands on code 573 (203.9 cd/m²) everywhere, no chroma fringes
    assert "MaxCLL 204 MaxFALL 204" in capsys.readouterr().err
    side = first_frame_side_data(dst)["Mastering display metadata"]
    assert Fraction(side["red_x"]) == Fraction(708, 1000)
    # full-range override on a limited-range clip lifts its black: average light must go up
    src = make_clip(tmp_path / "grey.mp4", rgb=np.full((48, 64, 3), 40, np.uint8), frames=3)
    levels = []
    for extra in ([], ["--input-range", "jpeg"]):
        assert main(["convert", str(src), str(tmp_path / "g.mkv"), "--operator", "bt2408", *extra]) == 0
        levels.append(int(capsys.readouterr().err.split("MaxFALL ")[1].split()[0]))
    assert levels[1] > levels[0]


def test_serve_is_wired_without_importing_the_server():
    from service.cli import COMMANDS, build_parser

    args = build_parser().parse_args(["serve", "--port", "9000"])
    assert (args.command, args.port, args.host) == ("serve", 9000, None)
    assert COMMANDS["serve"][1].__name__ == "_serve"


def test_convert_folder_one_bad_file_fails_alone(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=6)
    make_clip(folder / "b.mkv", frames=4, audio=True)
    (folder / "broken.mp4").write_bytes(b"not a video" * 50)
    (folder / "notes.txt").write_text("not picked up")
    out = tmp_path / "out"  # created on demand
    assert main(["convert", str(folder), "--out-dir", str(out), "--container", "mkv", "-o", "bt2408"]) == 1
    err = capsys.readouterr().err
    assert f"itmstream: error: {folder / 'broken.mp4'}: input 'broken.mp4' is not a readable video" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.mkv", "b.mkv"]
    assert "6 frames" in err and "4 frames" in err
    assert [s["codec_type"] for s in ffprobe(out / "b.mkv", "-show_streams")["streams"]] == ["video", "audio"]


def test_convert_many_inputs_need_out_dir(tmp_path, capsys):
    a = make_clip(tmp_path / "a.mp4", frames=2)
    assert main(["convert", str(a), str(a), str(tmp_path / "o.mp4")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["convert", str(a), str(a), "--out-dir", str(tmp_path / "o")]) == 1
    assert "would both be written to" in capsys.readouterr().err


def test_convert_folder_progress_bar_counts_to_every_file_s_frames(tmp_path, monkeypatch):
    """``--out-dir``: the bar's total is known before the first frame (a probe of every input), not None."""
    import io

    import tqdm

    bars: list[tqdm.tqdm] = []  # type: ignore[type-arg]
    seen: list[tuple[int | None, int]] = []  # (total, n) at the start and after every update

    class Recording(tqdm.tqdm):  # type: ignore[type-arg]
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **{**kwargs, "disable": False, "file": io.StringIO()})
            bars.append(self)
            seen.append((self.total, self.n))

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            seen.append((self.total, self.n))
            return shown

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=6)
    make_clip(folder / "b.mkv", frames=4)
    (folder / "c.mp4").write_bytes(b"not a video" * 50)  # probes as 0 frames, then fails alone
    assert main(["convert", str(folder), "--out-dir", str(tmp_path / "out"), "-o", "bt2408", "-q"]) == 1
    assert len(bars) == 1 and seen[0] == (10, 0)
    assert {total for total, _ in seen} == {10}, seen
    done = [n for _, n in seen]
    assert done == sorted(done) and done[-1] == 10 and len(set(done)) > 3, seen  # frame by frame, to the end
