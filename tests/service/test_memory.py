"""Heap trimming between jobs: glibc returns freed arena pages, so RSS falls back after a burst."""

import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"

_BURST = """
import threading
from service.memory import release_free_memory

def rss_mb():
    with open('/proc/self/status') as status:
        return next(int(l.split()[1]) for l in status if l.startswith('VmRSS')) / 1024

def burst():  # many small blocks in a thread's own arena, then all freed but one in every 64
    kept = []
    blocks = [bytearray(4096) for _ in range(60000)]
    kept.extend(blocks[::64])
    del blocks
    return kept

holder = []
thread = threading.Thread(target=lambda: holder.append(burst()))
thread.start(); thread.join()
before = rss_mb()
release_free_memory()
print(before - rss_mb())
"""


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's; this libc has nothing to trim")
def test_trim_returns_fragmented_free_memory() -> None:
    out = subprocess.run([sys.executable, "-c", _BURST], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 100.0, out.stdout  # ~230 MB allocated, ~3.6 MB kept


_BIG_BLOCKS = """
import sys
from service.memory import map_large_blocks

if sys.argv[1] == "map":
    assert map_large_blocks()

def rss_mb():
    with open('/proc/self/status') as status:
        return next(int(l.split()[1]) for l in status if l.startswith('VmRSS')) / 1024

first = bytearray(6 << 20)
del first  # freeing a mapped block raises glibc's threshold above it: later frames come from the heap
base = rss_mb()
kept, frames = [], []
for i in range(40):
    frames.append(bytearray((6 << 20) - (i + 1) * 4096))
    kept.append(bytearray(1024))  # a small block after each frame pins the heap, as a decoder's would
del frames
print(rss_mb() - base)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_mapped_large_blocks_leave_no_freed_frames_behind() -> None:
    def held_mb(mode: str) -> float:
        run = subprocess.run(
            [sys.executable, "-c", _BIG_BLOCKS, mode], capture_output=True, text=True, check=True
        )
        return float(run.stdout)

    assert held_mb("default") > 100.0  # glibc's own policy keeps ~240 MB of freed 6 MB frames
    assert held_mb("map") < 10.0
