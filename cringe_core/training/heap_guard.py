"""Hand memory back to the kernel when a heap that keeps freed memory fragments.

Training processes keep freed memory in glibc's heap (`cringe_core.process_env`), so a
step reuses the previous step's pages instead of faulting in fresh ones. PyTorch
allocates every tensor with `posix_memalign`, and glibc's aligned allocation requests
the size plus the alignment. A freed tensor's chunk therefore fits a later tensor of the
same size only after it has merged with free space beside it. A long-lived small
allocation beside it can prevent that merge. A test loop over one 256 MiB tensor then grew
the heap by 256 MiB every round, in some memory layouts and not in others.

The guard bounds that waste. Before each step it notes the bytes in use; after the
forward pass, the most a step has added to them (its working set); after the step, the
heap's free bytes. When the free bytes exceed three times the largest working set plus
512 MiB, it hands the free memory back (`malloc_trim`) and turns glibc's defaults back on
for the rest of the process. Training then runs as fast as it would without the setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from typing import Any

logger = logging.getLogger(__name__)

MiB = 2**20
SLACK_BYTES = 512 * MiB
WORKING_SET_FACTOR = 3

# mallopt parameter numbers and glibc's own defaults, from glibc's malloc.h and malloc.c.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc 2.33 and later); sizes in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes the heaps hold, free or not (mmapped chunks excluded)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks mapped on their own
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes allocated from the heaps
            "fordblks",  # free bytes kept in the heaps
            "keepcost",
        )
    ]


class HeapGuard:
    """Watch the heap across training steps; fall back to glibc's defaults when it fragments.

    `libc` needs `mallinfo2`, `mallopt` and `malloc_trim` with glibc's signatures; tests
    pass a fake. Use `for_this_process()` to get a guard only where one is needed.
    """

    def __init__(self, libc: Any) -> None:
        self._libc = libc
        self._in_use_at_start = 0
        self.working_set = 0
        self.fell_back = False

    @classmethod
    def for_this_process(cls) -> HeapGuard | None:
        """Return a guard on glibc 2.33 or later when freed memory is kept here, else None."""
        if os.environ.get("MALLOC_MMAP_MAX_") != "0":
            return None
        name, version = platform.libc_ver()
        if name != "glibc" or tuple(int(part) for part in version.split(".")[:2]) < (2, 33):
            return None
        path = ctypes.util.find_library("c")
        if path is None:
            return None
        libc = ctypes.CDLL(path)
        libc.mallinfo2.restype = MallInfo2
        libc.mallinfo2.argtypes = []
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        return cls(libc)

    def _in_use(self) -> int:
        info = self._libc.mallinfo2()
        return int(info.uordblks) + int(info.hblkhd)

    def step_started(self) -> None:
        if not self.fell_back:
            self._in_use_at_start = self._in_use()

    def forward_done(self) -> None:
        """Record the step's working set so far; call it before each backward pass."""
        if not self.fell_back:
            added = self._in_use() - self._in_use_at_start
            self.working_set = max(self.working_set, added)

    def step_finished(self) -> bool:
        """Check the heap after a step; return True when this call fell back."""
        if self.fell_back:
            return False
        free = int(self._libc.mallinfo2().fordblks)
        limit = WORKING_SET_FACTOR * self.working_set + SLACK_BYTES
        if free <= limit:
            return False
        self._libc.malloc_trim(0)
        self._libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        self._libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        self.fell_back = True
        logger.warning(
            "the heap kept %d MiB free against a working set of %d MiB per step, so it has "
            "fragmented; freed memory now goes back to the kernel, as by glibc's default. "
            "Training continues, with steps slower by the time the kernel takes to fault "
            "pages in; set MALLOC_MMAP_MAX_=65536 to start that way",
            free // MiB,
            self.working_set // MiB,
        )
        return True
