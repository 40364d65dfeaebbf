"""Process-wide C allocator settings that keep the daemon's resident memory flat.

glibc's ``malloc`` serves blocks of at least ``M_MMAP_THRESHOLD`` (128 KB at start) with
``mmap`` and gives them back on ``free``. But the first time such a block is freed, glibc raises
the threshold to that block's size (up to 32 MB), so from then on every frame-sized buffer
(a 768x432 BGR frame is 1 MB; decoder, resize and detector copies of it) comes from the heap
arenas, and a freed one stays resident in whichever thread's arena it was freed. With a reader
thread, a camera thread and a clip writer passing frames around, that is several MB that never
shrink. Fixing the threshold (which also turns off the dynamic adjustment) returns every large
buffer to the OS at once; measured in ``bench/soak.py`` (README, P6). The cost is a ``mmap``
and the page faults of one fresh buffer per frame-sized allocation, well under 1 % of a frame.

Owned by the composition root: ``EdgeApp.start`` calls ``tune_malloc`` once, before it starts
any thread. A no-op where the C library is not glibc (musl, macOS).
"""

from __future__ import annotations

__all__ = ["MMAP_THRESHOLD_BYTES", "tune_malloc"]

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 256 * 1024
"""Blocks this large (bytes) or larger are mmapped and unmapped on free. Python objects and
small arrays stay far below it; frames, crops and JPEG buffers are above it."""

_M_MMAP_THRESHOLD = -3  # glibc malloc.h


def tune_malloc(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes. True if applied, False where the C
    library has no ``mallopt`` (not glibc) or refuses the value."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not applied:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) was refused; memory may grow", threshold)
    return applied
