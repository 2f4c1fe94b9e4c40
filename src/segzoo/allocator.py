"""Keep glibc's large freed buffers for reuse in the ``segzoo`` command's own process.

By default glibc serves every allocation above 128 KiB-32 MiB (its adaptive mmap threshold) with a
fresh ``mmap`` and unmaps it on free, so each forward pass at 360x480 faults in its activation
buffers page by page again. ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1000000000000`` keep them
in the heap instead. Measured on a 2-core Xeon with AMX, torch 2.14.1, 1x3x360x480, bf16 eager
(``segzoo.optimize(model, torch.bfloat16, compiled=False)``): SegNet 236 -> 164 ms, SegNet-Basic
101 -> 76 ms, FCN-8s 197 -> 131 ms. The cost: memory freed by the process is kept for it, so its
resident size stays at its peak. The ``segzoo`` command applies this to its own process (it owns
it); a library import never does, and settings in the environment win.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: glibc's environment variables for the same settings; a user who sets either keeps their own
ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
_NEVER_TRIM = 10**12


def keep_large_buffers() -> bool:
    """Stop glibc from unmapping large freed buffers in this process (``mallopt``), on Linux with
    glibc and unless the environment sets :data:`ENVIRONMENT`; returns whether it did."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in ENVIRONMENT):
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
