"""Probe an upload with PyAV in a separate process before a job is accepted.

Opening and closing PyAV containers in two threads at once crashes the process (``free(): invalid pointer``
when a probe overlaps a running conversion's ``container.close()``), and a hostile file should not be able to
take the server down either; so probes run in a one-process spawn pool and only the result crosses back.
The worker dies with the server (``PR_SET_PDEATHSIG`` on Linux), so a server killed with SIGKILL leaves no
orphan prober behind, one per kill.
"""

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from service.errors import CorruptStreamError, UnsupportedFormatError
from service.jobs.isolated import die_with_parent

MAX_FRAME_RATE = 1000
"""Frames per second of video accepted at most (phones record slow motion at 240): with the duration limit,
this caps the frame count, so a few seconds of a 100 000 fps stream cannot queue hours of work."""


def probe_video(path: Path, name: str, max_width: int, max_height: int, max_duration_s: float) -> int:
    """Check ``path`` is SDR video we can convert within the limits; return its frame count.

    Besides the header checks of :class:`VideoReader` (size, colour, HDR), the whole video stream is
    demuxed without decoding: that measures streams that declare no duration (raw H.264) or lie about it,
    and finds truncated files, so such uploads are refused before a job exists. The scan stops at the
    duration limit, so a huge stream costs no more than an acceptable one.

    Raises
    ------
    InputError, UnsupportedFormatError, CorruptStreamError, AlreadyHDRError
        If it is not convertible.
    """
    from service.video.decode import DecodeOptions, VideoReader

    options = DecodeOptions(max_width=max_width, max_height=max_height)
    with VideoReader(path, options, name=name) as reader:
        still = reader.still_image_format
        if still is not None:
            raise UnsupportedFormatError(
                f"input '{name}' is a still image ({still}), not a video; convert stills with POST /v1/images"
            )
        declared = reader.info.duration_s
        if declared is not None and declared > max_duration_s:
            raise UnsupportedFormatError(
                f"input '{name}' lasts {declared:.1f} s; the limit is {max_duration_s:g} s"
            )
        most_frames = int(max_duration_s * MAX_FRAME_RATE)
        scan = reader.scan_packets(stop_after_s=max_duration_s, stop_after_packets=most_frames)
        if scan.stopped_early and scan.packets > most_frames:
            raise UnsupportedFormatError(
                f"input '{name}' has more than {most_frames} frames in {scan.span_s:.2f} s; at most "
                f"{MAX_FRAME_RATE} frames per second of the {max_duration_s:g} s limit are accepted"
            )
        if scan.stopped_early:
            raise UnsupportedFormatError(
                f"input '{name}' lasts more than {max_duration_s:g} s (measured from its packets; "
                f"it declares {'no duration' if declared is None else f'{declared:.1f} s'}); "
                f"the limit is {max_duration_s:g} s"
            )
        reader.check_scan(scan)
        return max(reader.info.frames, scan.packets)


class Prober:
    """A single spawned worker process that runs :func:`probe_video`."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # The kernel signals the worker when the thread that started it exits: that is the event loop's
            # thread (the pool spawns its worker from the first submit), which lives as long as the server.
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def probe(
        self, path: Path, name: str, max_width: int, max_height: int, max_duration_s: float
    ) -> int:
        """Run :func:`probe_video` in the probe process.

        Raises
        ------
        CorruptStreamError
            If the file crashed the probe process (it is restarted for the next upload).
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor(), probe_video, path, name, max_width, max_height, max_duration_s
            )
        except BrokenProcessPool:
            self.close()
            raise CorruptStreamError(f"input '{name}' crashed the media prober; corrupt file?") from None

    def close(self) -> None:
        """Stop the probe process."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
