"""Memory settings that a training process needs from its start.

A training step allocates several tensors of 100 MB or more afresh, such as the packed
logits, their gradient and the LM head's weight gradient, and frees them again before the
next step. These settings keep that cheap on CPUs:

- `THP_MEM_ALLOC_ENABLE=1` makes PyTorch's CPU allocator back large tensors with
  transparent huge pages. PyTorch reads it once, at its first allocation, so it must be
  set before torch is imported. It does nothing where the kernel has huge pages switched
  off, and on GPUs.
- `MALLOC_MMAP_MAX_=0` and a `MALLOC_TRIM_THRESHOLD_` that is never reached keep glibc's
  malloc from handing freed memory back to the kernel. By default glibc maps every
  allocation above 32 MiB with its own `mmap` and unmaps it on free, so every step faulted
  its large tensors in again and the kernel zeroed each page. On the 2-core development
  machine that kernel time was 3 to 4 s of CPU per SmolLM2-135M step, and the forward
  plus backward pass took 5.3 s with it against 3.3 s without. The cost is that the
  process holds its peak memory until it exits. The peak itself stayed the same (5.5 GB)
  in a 24-step test with batches of varying shape.
  glibc reads these variables when the process starts. For a process that started
  without them, `apply_to_this_process` sets the same values through `mallopt`.
- `MALLOC_ARENA_MAX=1`, for Ray Train workers only, serves every thread from that main
  heap. By default glibc gives threads other than the main one secondary arenas, which
  map each allocation above 64 MiB on their own despite the settings above. Ray
  Train runs the training function in such a thread. On the 2-core development machine,
  8 steps of a 1-worker Ray Train job took 62.6 s with this setting against 71.4 s
  without, and the worker's peak memory was 5.19 GB against 4.93 GB. A process that
  trains in its main thread gains nothing from it and held about 400 MB more, so it is
  left out there.

The malloc settings come only with the huge-page setting, which aligns large tensors to
2 MiB. With PyTorch's default 64-byte alignment, a test loop that allocated and freed one
256 MiB tensor grew the heap to 2 GB. With 2 MiB alignment the same loop kept the heap
flat in most memory layouts; `cringe_core.training.heap_guard` covers the others.

A value the user has already set is kept, so `THP_MEM_ALLOC_ENABLE=0`,
`MALLOC_MMAP_MAX_=65536` or `MALLOC_ARENA_MAX=0` (glibc's defaults) switches a setting
off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# 2^40 bytes: larger than any heap a training process grows, so glibc never trims it.
NEVER_TRIM = str(2**40)

HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": NEVER_TRIM}
TRAINING_ENV = {HUGE_PAGES: "1", **MALLOC_ENV}
# Added for processes that train in a thread other than the main one (Ray Train workers).
THREAD_MALLOC_ENV = {"MALLOC_ARENA_MAX": "1"}

# mallopt parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MALLOPT_PARAMS = {"MALLOC_MMAP_MAX_": M_MMAP_MAX, "MALLOC_TRIM_THRESHOLD_": M_TRIM_THRESHOLD}
INT_MAX = 2**31 - 1
MMAP_MAX_OFF = b"MALLOC_MMAP_MAX_=0"

# Whether apply_to_this_process switched mmap off in this process.
_applied_here = False


def training_env(
    environ: Mapping[str, str] | None = None, trains_in_thread: bool = False
) -> dict[str, str]:
    """Return the variables to give a new training process, keeping values already set.

    `trains_in_thread` adds the arena limit for a process that trains in a thread other
    than its main one, as a Ray Train worker does.
    """
    current = os.environ if environ is None else environ
    env = {HUGE_PAGES: current.get(HUGE_PAGES, "1")}
    with_malloc_defaults = env[HUGE_PAGES] == "1"
    defaults = {**MALLOC_ENV, **(THREAD_MALLOC_ENV if trains_in_thread else {})}
    for name, value in defaults.items():
        if name in current:
            env[name] = current[name]
        elif with_malloc_defaults:
            env[name] = value
    return env


def apply_to_this_process() -> None:
    """Set the variables here, for this process and the processes it starts.

    The huge-page setting takes effect only before this process first imports torch. The
    malloc settings are applied at once through `mallopt` where the C library is glibc.
    They are applied only when torch uses huge pages here, which it does when it saw the
    setting at import (the module's docstring explains why the two go together).
    """
    global _applied_here
    torch_saw_huge_pages = "torch" not in sys.modules or os.environ.get(HUGE_PAGES) == "1"
    for name, value in training_env().items():
        os.environ.setdefault(name, value)
    if os.environ[HUGE_PAGES] == "1" and torch_saw_huge_pages and _is_glibc():
        chosen = {name: os.environ[name] for name in MALLOPT_PARAMS if name in os.environ}
        _applied_here = set_malloc_options(chosen, glibc().mallopt)


def glibc() -> Any:
    """Return the C library already loaded in this process, with `mallopt` typed.

    Call it only where the C library is glibc.
    """
    library = ctypes.CDLL(None)  # the symbols already loaded, glibc's among them
    library.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    library.mallopt.restype = ctypes.c_int
    return library


def keeps_freed_memory() -> bool:
    """Tell whether glibc keeps large freed blocks in this process's heap.

    True when `apply_to_this_process` turned mmap off here, or when the process started
    with `MALLOC_MMAP_MAX_=0` in its environment (glibc reads it only at start-up).
    """
    return _applied_here or _started_with(MMAP_MAX_OFF)


def set_malloc_options(values: Mapping[str, str], mallopt: Callable[[int, int], int]) -> bool:
    """Pass each value to `mallopt` and return True when mmap ended up switched off."""
    mmap_off = False
    for name, text in values.items():
        value = _mallopt_value(name, text)
        if value is None:
            continue
        if mallopt(MALLOPT_PARAMS[name], value) != 1:
            logger.warning("glibc rejected %s=%s, so its default is kept", name, text)
        elif MALLOPT_PARAMS[name] == M_MMAP_MAX and value == 0:
            mmap_off = True
    return mmap_off


def _mallopt_value(name: str, text: str) -> int | None:
    """Convert a variable's text to mallopt's C int, or None to leave the option alone."""
    try:
        value = int(text)
    except ValueError:
        logger.warning(
            "ignoring %s=%r: set a whole number, or unset it for the default", name, text
        )
        return None
    if value < 0:
        logger.warning("ignoring %s=%s: set a number of 0 or more", name, text)
        return None
    if value <= INT_MAX:
        return value
    if MALLOPT_PARAMS[name] == M_TRIM_THRESHOLD:
        return -1  # mallopt's "never trim", which a threshold above 2 GiB nearly means
    logger.warning("%s=%s is above mallopt's limit, so %d is used instead", name, text, INT_MAX)
    return INT_MAX


def _is_glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def _started_with(entry: bytes) -> bool:
    """Check the environment this process started with (Linux's /proc/self/environ)."""
    try:
        return entry in Path("/proc/self/environ").read_bytes().split(b"\0")
    except OSError:
        return False
