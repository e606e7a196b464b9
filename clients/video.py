"""A video file as an iterable of RGB frames for the stream clients (PyAV, imported only when used)."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class VideoFrames:
    """The frames of a video file as H x W x 3 uint8 RGB (8-bit, BT.709 code values as decoded).

    Iterating decodes the file afresh each time, so one object can feed several streams.

    Examples
    --------
    >>> source = VideoFrames.open("clip.mp4")  # doctest: +SKIP
    >>> options = StreamOptions(source.width, source.height, colour="bt709")  # doctest: +SKIP
    """

    path: Path
    width: int
    height: int
    fps: float
    limit: int | None = None

    @classmethod
    def open(cls, path: str | Path, limit: int | None = None) -> "VideoFrames":
        """Probe the first video stream's size and rate.

        Raises
        ------
        ValueError
            If the file has no video stream.
        av.error.FFmpegError
            If it cannot be opened.
        """
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"'{path}' has no video stream")
            video = container.streams.video[0]
            rate = float(video.average_rate or video.guessed_rate or 25)
            return cls(Path(path), video.codec_context.width, video.codec_context.height, rate, limit)

    def __iter__(self) -> Iterator[npt.NDArray[np.uint8]]:
        """Decode and yield frames, stopping after ``limit`` when set."""
        import av

        with av.open(str(self.path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if self.limit is not None and index >= self.limit:
                    return
                yield np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
