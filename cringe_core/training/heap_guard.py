"""Hand memory back to the kernel when a heap that keeps freed memory fragments.

Training processes keep freed memory in glibc's heap (`cringe_core.process_env`), so a
step reuses the previous step's pages instead of faulting in fresh ones. PyTorch
allocates every tensor with `posix_memalign`, and glibc's aligned allocation requests
the size plus the alignment. A freed tensor's chunk therefore fits a later tensor of the
same size only after it has merged with free space beside it. A long-lived small
allocation beside it can prevent that merge. A test loop over one 256 MiB tensor then grew
the heap by 256 MiB every round, in some memory layouts and not in others.

The guard bounds that waste. The trainer reports the bytes in use after each forward
and each backward pass, the points where a step uses the most memory. After each step,
the guard compares the heap's size with the most bytes ever in use. A heap larger than
twice that plus 512 MiB contains memory that no step has needed, so the guard hands
the free memory back (`malloc_trim`) and sets glibc's thresholds to the highest values
its own dynamic thresholds reach. The rest of the run then allocates much as a process
started without the settings would.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from cringe_core import process_env
from cringe_core.process_env import M_MMAP_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD

logger = logging.getLogger(__name__)

MiB = 2**20
SLACK_BYTES = 512 * MiB
PEAK_FACTOR = 2

# Setting any of these turns glibc's dynamic thresholds off, so the fallback sets the
# highest values those reach: mapped above 32 MiB (the dynamic threshold's maximum on
# 64-bit systems), trimmed above twice that.
FALLBACK_OPTIONS = (
    (M_MMAP_MAX, 65536),
    (M_MMAP_THRESHOLD, 32 * MiB),
    (M_TRIM_THRESHOLD, 64 * MiB),
)


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc 2.33 and later), with sizes in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes in the heaps, free or not (mmapped chunks excluded)
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
    """Heap watcher across training steps, which falls back to glibc's behaviour on fragmentation.

    `libc` needs `mallinfo2`, `mallopt` and `malloc_trim` with glibc's signatures. Tests
    pass a fake. Use `for_this_process()` to get a guard only where one is needed.
    """

    def __init__(self, libc: Any) -> None:
        self._libc = libc
        self.peak_in_use = 0
        self.fell_back = False

    @classmethod
    def for_this_process(cls) -> HeapGuard | None:
        """Return a guard where this process keeps freed memory and has mallinfo2, else None."""
        if not process_env.keeps_freed_memory():
            return None
        libc = process_env.glibc()
        if not hasattr(libc, "mallinfo2"):
            return None  # glibc before 2.33
        libc.mallinfo2.restype = MallInfo2
        libc.mallinfo2.argtypes = []
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        return cls(libc)

    def note_in_use(self) -> None:
        """Record the bytes in use. Call it after each forward and each backward pass."""
        if not self.fell_back:
            in_use = int(self._libc.mallinfo2().uordblks)
            self.peak_in_use = max(self.peak_in_use, in_use)

    def step_finished(self) -> bool:
        """Check the heap after a step and return True when this call fell back."""
        if self.fell_back:
            return False
        heap = int(self._libc.mallinfo2().arena)
        limit = PEAK_FACTOR * self.peak_in_use + SLACK_BYTES
        if heap <= limit:
            return False
        self._libc.malloc_trim(0)
        for option, value in FALLBACK_OPTIONS:
            self._libc.mallopt(option, value)
        self.fell_back = True
        logger.warning(
            "the heap contains %d MiB, more than twice the %d MiB a step has used at most, "
            "so it has fragmented. Freed memory now goes back to the kernel, as by "
            "glibc's default, and training continues with slower steps. Set "
            "MALLOC_MMAP_MAX_=65536 to start that way",
            heap // MiB,
            self.peak_in_use // MiB,
        )
        return True
