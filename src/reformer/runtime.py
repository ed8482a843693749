"""Process-wide CPU allocator setting that long sequences need: keep freed blocks in the heap.

glibc's malloc serves every allocation above its mmap threshold (128 KiB at start) with fresh pages from the
kernel and hands freed memory above its trim threshold back, so each of the many multi-MiB temporaries of a
long-sequence pass (score blocks, gathered rounds, projections) is page-faulted in again on every use. On a
2-core AMD EPYC, seq_len-8760 eval forward, 2 threads, `tune_malloc()` against none: minor page faults 1.57M ->
0.19M, float32 forward 1.86-1.95 -> 1.43-1.47 s, bfloat16 autocast 1.12-1.13 -> 1.06-1.09 s. PyTorch's CPU
performance tuning guide recommends the same (or jemalloc / tcmalloc) for the same reason.

glibc will not serve blocks above 32 MiB from the heap whatever the setting; for those the CLI turns on
PyTorch's transparent-huge-page allocation (`THP_MEM_ALLOC_ENABLE=1`, set in `reformer.cli` before torch is
imported): LSH attention alone at L = 65,536 (one head's rounds exceed 32 MiB) 9.4 -> 5.9 s a step, minor faults
4.6M -> 0.42M (`reformer bench attention-scaling`); an L = 32,768 training step takes the same time and peaks
170 MB lower (`reformer bench compare`).

`tune_malloc()` sets both thresholds through `mallopt` for the running process; the CLI calls it first thing, as
do the benchmark workers (for every implementation they run alike). Library users may call it at start-up. The
cost: up to `trim_threshold` of freed memory stays mapped to the process instead of going back to the OS.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)


def tune_malloc(mmap_threshold: int = _MMAP_THRESHOLD_MAX, trim_threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes); True when both were set, False elsewhere (no glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_ok = mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, _MMAP_THRESHOLD_MAX)) == 1
    trim_ok = mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    return mmap_ok and trim_ok
