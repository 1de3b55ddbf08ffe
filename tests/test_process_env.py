"""Training processes start with huge pages for large CPU tensors, unless the user says no."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cringe_core.process_env import TRAINING_ENV, training_env
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


def test_training_env_sets_huge_pages() -> None:
    assert training_env({}) == {"THP_MEM_ALLOC_ENABLE": "1"}
    assert set(TRAINING_ENV) == {"THP_MEM_ALLOC_ENABLE"}


def test_user_value_is_kept() -> None:
    assert training_env({"THP_MEM_ALLOC_ENABLE": "0"}) == {"THP_MEM_ALLOC_ENABLE": "0"}


def test_ray_train_workers_inherit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert _worker_env()["THP_MEM_ALLOC_ENABLE"] == "1"
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
