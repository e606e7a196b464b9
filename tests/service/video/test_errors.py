import av
import pytest

from service.errors import (
    AlreadyHDRError,
    CorruptStreamError,
    DeadlineExceededError,
    EngineError,
    InputError,
    ItmError,
    JobCancelledError,
    OutputError,
    OverloadedError,
    UnsupportedFormatError,
    http_status,
)
from service.video.errors import map_av_errors


def test_tree_inherits_the_natural_builtins():
    assert issubclass(CorruptStreamError, ValueError) and issubclass(AlreadyHDRError, InputError)
    assert issubclass(OutputError, OSError) and issubclass(DeadlineExceededError, TimeoutError)
    assert issubclass(EngineError, RuntimeError)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (UnsupportedFormatError("x"), 415),
        (CorruptStreamError("x"), 422),
        (AlreadyHDRError("x"), 422),
        (InputError("x"), 422),
        (OutputError("x"), 500),
        (OverloadedError("x", retry_after_s=3), 503),
        (DeadlineExceededError("x"), 504),
        (EngineError("x"), 500),
        (JobCancelledError("x"), 499),
        (ItmError("x"), 500),
    ],
)
def test_http_status_table(exc, status):
    assert http_status(exc) == status


def test_map_av_errors_input_side(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info, map_av_errors("input", "a.mp4"):
        av.open(str(tmp_path / "missing.mp4"))
    assert isinstance(info.value.__cause__, av.error.FileNotFoundError)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CorruptStreamError, match="not a readable video"), map_av_errors("input", "noise.bin"):
        av.open(str(noise))


def test_map_av_errors_output_side(tmp_path):
    with pytest.raises(OutputError, match="cannot be written"), map_av_errors("output", "x.mp4"):
        raise av.error.PermissionError(13, "Permission denied")
    with pytest.raises(OutputError, match="could not be written"), map_av_errors("output", "x.mp4"):
        raise av.error.InvalidDataError(-1094995529, "Invalid data found when processing input")
    with pytest.raises(EngineError, match="lacks"), map_av_errors("output", "x.mp4"):
        raise av.error.EncoderNotFoundError(-1, "encoder not found")


def test_itm_errors_pass_through_unchanged():
    original = AlreadyHDRError("already")
    with pytest.raises(AlreadyHDRError) as info, map_av_errors("input"):
        raise original
    assert info.value is original
