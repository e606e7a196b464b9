"""Cap glibc's malloc arenas for the server process, so RSS stays flat under mixed streams and jobs.

glibc gives threads up to 8 x cores arenas and rarely returns their freed pages. The server's threads (event
loop, inference workers, conversion threads, x265's own pool) free multi-megabyte frame buffers in each
other's arenas; measured with ``bench/load.py`` (8 streams + 4 upload workers, 240 s), RSS grew from 1.29 GB
to 2.0 GB (+56 %) with glibc's defaults and stayed flat (1.13 GB -> 1.08 GB) with two arenas, which also
converted more job frames in the same time. ``MALLOC_ARENA_MAX`` in the environment does the same, but only
if every launcher (make, Docker, systemd, a test harness) remembers to set it; ``mallopt`` here cannot be
forgotten.
"""

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

SERVER_ARENAS = 2
MMAP_THRESHOLD_BYTES = 1 << 20
"""Blocks this large are always mmapped, so a freed frame buffer (720p: 2.7-11 MB) goes back to the system
at once instead of leaving a hole in an arena; a fixed value also stops glibc raising it to 32 MiB."""
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
"""``M_MMAP_THRESHOLD`` and ``M_ARENA_MAX`` from glibc's ``malloc.h``."""


def limit_malloc_arenas(arenas: int = SERVER_ARENAS, mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Cap new malloc arenas and fix the mmap threshold, unless ``MALLOC_ARENA_MAX`` is set (it wins).

    Call it before the server starts its threads: arenas that already exist are kept.

    Returns
    -------
    bool
        Whether the cap was applied (False off glibc, or when the environment already decides).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    applied = bool(mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))
    applied &= bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(mmap_threshold)))
    log.debug("malloc arenas capped at %d, mmap threshold %d: %s", arenas, mmap_threshold, applied)
    return applied
