"""The heap guard falls back to glibc's defaults when kept memory outgrows the working set."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from cringe_core.process_env import TRAINING_ENV
from cringe_core.training.heap_guard import (
    DEFAULT_MMAP_MAX,
    DEFAULT_TRIM_THRESHOLD,
    M_MMAP_MAX,
    M_TRIM_THRESHOLD,
    SLACK_BYTES,
    HeapGuard,
    MallInfo2,
)

MiB = 2**20


@dataclass
class FakeLibc:
    """Scripted heap statistics, and a record of the calls the guard makes."""

    in_use: int = 0
    free: int = 0
    calls: list[tuple[str, int, ...]] = field(default_factory=list)

    def mallinfo2(self) -> MallInfo2:
        return MallInfo2(uordblks=self.in_use, fordblks=self.free)

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


def run_step(guard: HeapGuard, libc: FakeLibc, working_set: int, free_after: int) -> bool:
    libc.in_use = 1000 * MiB
    guard.step_started()
    libc.in_use += working_set
    guard.forward_done()
    libc.in_use = 1000 * MiB
    libc.free = free_after
    return guard.step_finished()


def test_kept_memory_within_the_limit_is_left_alone() -> None:
    libc = FakeLibc()
    guard = HeapGuard(libc)
    for _ in range(5):
        assert not run_step(guard, libc, working_set=1000 * MiB, free_after=3000 * MiB)
    assert guard.working_set == 1000 * MiB
    assert libc.calls == []


def test_growing_free_memory_makes_it_fall_back_once() -> None:
    libc = FakeLibc()
    guard = HeapGuard(libc)
    limit = 3 * 1000 * MiB + SLACK_BYTES
    assert not run_step(guard, libc, working_set=1000 * MiB, free_after=limit)
    assert run_step(guard, libc, working_set=1000 * MiB, free_after=limit + MiB)
    assert libc.calls == [
        ("malloc_trim", 0),
        ("mallopt", M_MMAP_MAX, DEFAULT_MMAP_MAX),
        ("mallopt", M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD),
    ]
    # After the fallback the guard stays quiet: glibc hands memory back by itself.
    assert not run_step(guard, libc, working_set=1000 * MiB, free_after=limit * 10)
    assert len(libc.calls) == 3


def test_largest_working_set_sets_limit() -> None:
    libc = FakeLibc()
    guard = HeapGuard(libc)
    run_step(guard, libc, working_set=2000 * MiB, free_after=0)
    # A later, smaller step does not lower the limit that the larger one set.
    assert not run_step(guard, libc, working_set=100 * MiB, free_after=6000 * MiB)
    assert guard.working_set == 2000 * MiB


def test_no_guard_without_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    assert HeapGuard.for_this_process() is None
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    assert HeapGuard.for_this_process() is None


# A training-like loop in a process that keeps freed memory: the guard reads glibc's real
# statistics, measures a working set of about 256 MiB and leaves the heap alone.
GUARDED_CHILD = """
import json
from cringe_core import process_env
process_env.apply_to_this_process()
import torch
from cringe_core.training.heap_guard import HeapGuard
guard = HeapGuard.for_this_process()
fell_back = []
for _ in range(4):
    guard.step_started()
    tensor = torch.ones(64 * 2**20)
    guard.forward_done()
    del tensor
    fell_back.append(guard.step_finished())
print(json.dumps({"working_set": guard.working_set, "fell_back": any(fell_back)}))
"""


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or platform.libc_ver()[1] < "2.33",
    reason="the guard reads glibc's mallinfo2 (glibc 2.33 and later)",
)
def test_guard_reads_the_real_heap() -> None:
    base = {name: value for name, value in os.environ.items() if name not in TRAINING_ENV}
    completed = subprocess.run(
        [sys.executable, "-c", GUARDED_CHILD], env=base, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    assert 256 * MiB <= result["working_set"] < 300 * MiB
    assert result["fell_back"] is False
