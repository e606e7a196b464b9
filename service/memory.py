"""Give freed heap back to the system after each job, so RSS stays flat under mixed streams and jobs.

glibc gives threads up to 8 x cores arenas and returns little of what they free. The server's threads (event
loop, inference workers, conversion threads, x265's own pool) free multi-megabyte frame buffers in each
other's arenas. Measured with ``bench/load.py`` (8 streams + 4 upload workers): RSS grew +140 % in 600 s
with glibc's defaults, while streams alone and jobs alone stayed flat. Capping arenas at 2 and fixing the
mmap threshold at 1 MiB kept RSS flat too, but cost more than half the stream throughput (720p ``bt2408``
108 -> 50 fps: allocation lock contention and page faults). ``malloc_trim(0)`` between jobs returns the
free pages of every arena without touching the allocator's fast paths.
"""

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the system (glibc ``malloc_trim``); takes milliseconds.

    Returns
    -------
    bool
        Whether any memory was released (always False off glibc).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    released = bool(trim(0))
    log.debug("malloc_trim released memory: %s", released)
    return released
