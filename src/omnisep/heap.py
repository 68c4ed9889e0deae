"""Keep freed memory in the process heap (glibc), for the command-line tools.

Separation allocates and frees the same large spectrogram buffers for every
chunk and every query. glibc serves blocks above its mmap threshold with
fresh mmap calls and returns freed heap to the system, so each reuse pays page
faults on memory it just gave back; with several queries that churn costs
more than the extra U-Net work. Raising both thresholds keeps those pages.
Measured in docs/performance-scale.md (`benchmarks/rtf.py --default-malloc`).
The cost is a higher resident peak, so only the CLI and benchmarks opt in:
the library does not change a host application's allocator.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB; False where that is not possible (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, libc's among them: no library search
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES))
