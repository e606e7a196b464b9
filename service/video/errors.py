"""PyAV/FFmpeg errors translated into the :mod:`service.errors` tree, at the one boundary that sees them."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import av

from service.errors import (
    CorruptStreamError,
    EngineError,
    InputError,
    ItmError,
    OutputError,
    UnsupportedFormatError,
)


def ffmpeg_detail(exc: BaseException) -> str:
    """FFmpeg's own words without PyAV's "[Errno N]" prefix and the repeated file name."""
    if isinstance(exc, av.error.FFmpegError):
        return str(exc.strerror or exc).rstrip(".").lower()
    return str(exc)


@contextmanager
def map_av_errors(side: Literal["input", "output"], name: str = "") -> Iterator[None]:
    """Re-raise PyAV errors raised inside the block as :class:`service.errors.ItmError` subclasses.

    The most specific match wins, and the message says what is wrong in words a user of the CLI or the API
    can act on; the original exception stays attached as ``__cause__`` for logs.

    Parameters
    ----------
    side : {"input", "output"}
        Which file the block works on: the same OS error means a bad request on the input side and a
        server-side failure on the output side.
    name : str, optional
        File name to quote in messages.

    Raises
    ------
    InputError, UnsupportedFormatError, CorruptStreamError
        For input-side failures.
    OutputError
        For output-side I/O and muxing failures.
    EngineError
        For a missing encoder or an internal FFmpeg bug.
    """
    where = f" '{name}'" if name else ""
    try:
        yield
    except ItmError:
        raise
    except av.error.FileNotFoundError as exc:
        if side == "input":
            raise InputError(f"input file{where} does not exist") from exc
        raise OutputError(f"output directory of{where} does not exist") from exc
    except (av.error.PermissionError, av.error.IsADirectoryError) as exc:
        if side == "input":
            raise InputError(f"input{where} cannot be read: {ffmpeg_detail(exc)}") from exc
        raise OutputError(f"output{where} cannot be written: {ffmpeg_detail(exc)}") from exc
    except (av.error.DecoderNotFoundError, av.error.DemuxerNotFoundError) as exc:
        raise UnsupportedFormatError(
            f"input{where} uses a format this build cannot decode: {ffmpeg_detail(exc)}"
        ) from exc
    except (av.error.EncoderNotFoundError, av.error.MuxerNotFoundError) as exc:
        raise EngineError(
            f"this build of FFmpeg lacks a needed encoder or muxer: {ffmpeg_detail(exc)}"
        ) from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        if side == "input":
            raise CorruptStreamError(
                f"input{where} is not a readable video, or it is truncated or corrupt ({ffmpeg_detail(exc)})"
            ) from exc
        raise OutputError(f"output{where} could not be written: {ffmpeg_detail(exc)}") from exc
    except av.error.FFmpegError as exc:
        if side == "input":
            raise CorruptStreamError(f"input{where} could not be read: {ffmpeg_detail(exc)}") from exc
        if isinstance(exc, OSError):
            raise OutputError(f"output{where} could not be written: {ffmpeg_detail(exc)}") from exc
        raise EngineError(f"FFmpeg failed while writing{where}: {ffmpeg_detail(exc)}") from exc
