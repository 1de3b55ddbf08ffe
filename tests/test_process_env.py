"""Training processes start with huge pages and keep freed memory, unless the user turns it off."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cringe_core.process_env import (
    INT_MAX,
    M_MMAP_MAX,
    M_TRIM_THRESHOLD,
    THREAD_MALLOC_ENV,
    TRAINING_ENV,
    set_malloc_options,
    training_env,
)
from tests.conftest import env_without_training_vars, glibc_with_mallinfo2
from workers.ray_train import _worker_env

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# Allocates 256 MiB through torch, touches it, and prints the process's huge-page bytes.
CHILD = """
import sys
from cringe_core import process_env
process_env.apply_to_this_process()
import torch
tensor = torch.ones(64 * 2**20)
for line in open("/proc/self/smaps_rollup"):
    if line.startswith("AnonHugePages:"):
        print(int(line.split()[1]) * 1024)
"""


def huge_page_bytes(environ: dict[str, str]) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD], env=environ, capture_output=True, text=True, check=True
    )
    return int(completed.stdout.split()[-1])


def test_training_env_sets_huge_pages_and_malloc() -> None:
    assert training_env({}) == TRAINING_ENV
    assert {
        "THP_MEM_ALLOC_ENABLE": "1",
        "MALLOC_MMAP_MAX_": "0",
        "MALLOC_TRIM_THRESHOLD_": str(2**40),
    } == TRAINING_ENV


def test_thread_training_limits_arenas() -> None:
    assert training_env({}, trains_in_thread=True) == {**TRAINING_ENV, "MALLOC_ARENA_MAX": "1"}
    user_set = training_env({"MALLOC_ARENA_MAX": "0"}, trains_in_thread=True)
    assert user_set["MALLOC_ARENA_MAX"] == "0"
    # Without huge pages none of the malloc settings is added.
    assert training_env({"THP_MEM_ALLOC_ENABLE": "0"}, trains_in_thread=True) == {
        "THP_MEM_ALLOC_ENABLE": "0"
    }


def test_user_value_is_kept() -> None:
    assert training_env({"MALLOC_MMAP_MAX_": "65536"})["MALLOC_MMAP_MAX_"] == "65536"
    # Without huge pages, the malloc settings are left out: they fragment the heap then.
    assert training_env({"THP_MEM_ALLOC_ENABLE": "0"}) == {"THP_MEM_ALLOC_ENABLE": "0"}
    assert training_env({"THP_MEM_ALLOC_ENABLE": "0", "MALLOC_MMAP_MAX_": "0"}) == {
        "THP_MEM_ALLOC_ENABLE": "0",
        "MALLOC_MMAP_MAX_": "0",
    }


def test_ray_train_workers_inherit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in {**TRAINING_ENV, **THREAD_MALLOC_ENV}:
        monkeypatch.delenv(name, raising=False)
    assert TRAINING_ENV.items() <= _worker_env().items()
    # Ray Train runs the training function in a thread of its own.
    assert _worker_env()["MALLOC_ARENA_MAX"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    assert _worker_env()["THP_MEM_ALLOC_ENABLE"] == "0"


@pytest.mark.skipif(
    not THP_SETTING.exists() or "[never]" in THP_SETTING.read_text(),
    reason="the kernel has transparent huge pages switched off",
)
def test_large_tensors_get_huge_pages() -> None:
    base = {name: value for name, value in os.environ.items() if name != "THP_MEM_ALLOC_ENABLE"}
    enabled = huge_page_bytes(base)
    assert enabled >= 128 * 2**20

    # Control: switched off by the user. With the kernel set to "always", every large
    # mapping gets huge pages anyway, so the control is checked only under "madvise".
    if "[madvise]" in THP_SETTING.read_text():
        disabled = huge_page_bytes({**base, "THP_MEM_ALLOC_ENABLE": "0"})
        assert disabled < 16 * 2**20


# Allocates and frees a 256 MiB tensor a few times, in the main thread or in a new one as
# Ray Train does. Prints how many chunks mapped on their own the tensor added, from glibc's
# own statistics (mallinfo2).
REUSE_CHILD = """
import ctypes, json, sys, threading
from cringe_core import process_env
process_env.apply_to_this_process()
import torch
from cringe_core.training.heap_guard import MallInfo2

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
mapped = []

def allocate():
    for _ in range(3):
        before = mallinfo2().hblks
        tensor = torch.ones(64 * 2**20)
        mapped.append(mallinfo2().hblks - before)
        del tensor

if sys.argv[1] == "thread":
    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
else:
    allocate()
print(json.dumps({"mapped": max(mapped)}))
"""


def malloc_statistics(environ: dict[str, str], where: str = "main") -> dict[str, int]:
    completed = subprocess.run(
        [sys.executable, "-c", REUSE_CHILD, where], env=environ, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    statistics: dict[str, int] = json.loads(completed.stdout.splitlines()[-1])
    return statistics


@pytest.mark.skipif(
    not glibc_with_mallinfo2(), reason="the settings are glibc's, and mallinfo2 came in 2.33"
)
def test_large_tensors_come_from_the_heap() -> None:
    base = env_without_training_vars()
    # Started without the variables: apply_to_this_process sets them through mallopt, so
    # the tensor comes from the heap, where freed memory is kept. Whether a later round
    # reuses it depends on the memory layout (see cringe_core.training.heap_guard), so
    # this checks only where the tensor comes from.
    with_settings = malloc_statistics(base)
    assert with_settings["mapped"] == 0

    # Control: glibc's default maps each 256 MiB tensor on its own and unmaps it on free.
    default = malloc_statistics({**base, "MALLOC_MMAP_MAX_": "65536"})
    assert default["mapped"] >= 1


@pytest.mark.skipif(
    not glibc_with_mallinfo2(), reason="the settings are glibc's, and mallinfo2 came in 2.33"
)
def test_thread_tensors_come_from_the_heap() -> None:
    environ = {**env_without_training_vars(), **training_env({}, trains_in_thread=True)}
    assert malloc_statistics(environ, "thread")["mapped"] == 0

    # Control: with glibc's default arenas, a new thread gets a secondary arena, which
    # maps a 256 MiB tensor on its own even with mmap switched off.
    default = malloc_statistics({**environ, "MALLOC_ARENA_MAX": "0"}, "thread")
    assert default["mapped"] >= 1


def test_bad_malloc_value_is_ignored_with_warning() -> None:
    base = env_without_training_vars()
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cringe_core import process_env\nprocess_env.apply_to_this_process()",
        ],
        env={**base, "MALLOC_MMAP_MAX_": "lots"},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    if platform.libc_ver()[0] == "glibc":
        assert "ignoring MALLOC_MMAP_MAX_='lots'" in completed.stderr


class RecordingMallopt:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def __call__(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return self.result


def test_mallopt_gets_c_int_values() -> None:
    mallopt = RecordingMallopt()
    values = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}
    assert set_malloc_options(values, mallopt) is True
    # A trim threshold beyond a C int becomes -1, mallopt's "never trim".
    assert mallopt.calls == [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)]


def test_mallopt_clamps_and_skips_bad_values(caplog: pytest.LogCaptureFixture) -> None:
    mallopt = RecordingMallopt()
    values = {"MALLOC_MMAP_MAX_": str(2**40), "MALLOC_TRIM_THRESHOLD_": "-5"}
    assert set_malloc_options(values, mallopt) is False
    assert mallopt.calls == [(M_MMAP_MAX, INT_MAX)]
    assert "above mallopt's limit" in caplog.text
    assert "ignoring MALLOC_TRIM_THRESHOLD_=-5" in caplog.text


def test_mallopt_rejection_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    mallopt = RecordingMallopt(result=0)
    assert set_malloc_options({"MALLOC_MMAP_MAX_": "0"}, mallopt) is False
    assert "glibc rejected MALLOC_MMAP_MAX_=0" in caplog.text
