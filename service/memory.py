"""Keep glibc's heap from hoarding freed frame buffers: trim it in the server, map big blocks in the CLI.

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


M_MMAP_THRESHOLD = -3
"""glibc ``mallopt`` parameter number (malloc.h)."""
CLI_MMAP_THRESHOLD = 4 << 20
"""Blocks of 4 MiB and more (every 1080p plane and frame batch) are mapped and unmapped on their own."""


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name is not None else None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    if libc is None:
        return None
    try:
        trim: Callable[[int], int] = libc.malloc_trim
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


def map_large_blocks(threshold: int = CLI_MMAP_THRESHOLD) -> bool:
    """Serve allocations of ``threshold`` bytes and more with their own mappings (glibc ``mallopt``).

    For the one-job CLI process only. glibc raises its mmap threshold to the size of the largest block
    freed so far, so after the first 1080p frames every 6-12 MB buffer comes from the heap, and the freed
    ones stay there as fragments: ~40-60 MB of a 1080p ``itmstream convert`` peak (727-761 MB -> 688-710
    MB measured with ``MALLOC_MMAP_THRESHOLD_=4194304``, issue 13's 700 MB target). Not in the server:
    its stream frames would pay a page fault per fresh mapping (see the module docstring).

    Returns
    -------
    bool
        Whether the setting took (always False off glibc).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
