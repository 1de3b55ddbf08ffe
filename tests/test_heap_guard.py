"""The heap guard falls back to glibc's behaviour when the heap outgrows what steps use."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cringe_core import process_env
from cringe_core.spec import parse_spec
from cringe_core.training import trainer as trainer_module
from cringe_core.training.heap_guard import (
    FALLBACK_OPTIONS,
    SLACK_BYTES,
    HeapGuard,
    MallInfo2,
)
from cringe_core.training.trainer import Trainer
from tests.conftest import ALPACA_EVAL, env_without_training_vars, glibc_with_mallinfo2

MiB = 2**20


@dataclass
class FakeLibc:
    """Scripted heap statistics, and a record of the calls the guard makes."""

    in_use: int = 0
    heap: int = 0
    calls: list[tuple[str, int, int]] = field(default_factory=list)

    def mallinfo2(self) -> MallInfo2:
        return MallInfo2(uordblks=self.in_use, arena=self.heap)

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append(("mallopt", option, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1


def run_step(guard: HeapGuard, libc: FakeLibc, peak: int, heap_after: int) -> bool:
    """Run one step: the bytes in use reach `peak` in the backward pass, then drop to 1 GiB."""
    libc.in_use = peak // 2
    guard.note_in_use()  # after the forward pass
    libc.in_use = peak
    guard.note_in_use()  # after the backward pass, with every gradient alive
    libc.in_use = 1024 * MiB  # zero_grad freed the gradients
    libc.heap = heap_after
    return guard.step_finished()


def test_healthy_heap_is_left_alone() -> None:
    libc = FakeLibc()
    guard = HeapGuard(libc)
    for _ in range(5):
        assert not run_step(guard, libc, peak=3000 * MiB, heap_after=5000 * MiB)
    assert guard.peak_in_use == 3000 * MiB
    assert libc.calls == []


def test_freed_gradients_keep_guard_quiet() -> None:
    # A large model's gradients, freed at the end of each step, stay in the heap as free
    # memory. The probe after the backward pass counts them in the peak.
    libc = FakeLibc()
    guard = HeapGuard(libc)
    assert not run_step(guard, libc, peak=4000 * MiB, heap_after=4000 * MiB + SLACK_BYTES)
    assert libc.calls == []


def test_growing_heap_falls_back_once() -> None:
    libc = FakeLibc()
    guard = HeapGuard(libc)
    limit = 2 * 3000 * MiB + SLACK_BYTES
    assert not run_step(guard, libc, peak=3000 * MiB, heap_after=limit)
    assert run_step(guard, libc, peak=3000 * MiB, heap_after=limit + MiB)
    expected = [("malloc_trim", 0, 0)]
    expected += [("mallopt", option, value) for option, value in FALLBACK_OPTIONS]
    assert libc.calls == expected

    # After the fallback the guard stays quiet: glibc hands memory back by itself.
    assert not run_step(guard, libc, peak=3000 * MiB, heap_after=limit * 10)
    assert libc.calls == expected


def test_fallback_restores_dynamic_threshold_maximums() -> None:
    # mmap back on, large blocks mapped above 32 MiB and the heap trimmed above 64 MiB.
    assert ((-4, 65536), (-3, 32 * MiB), (-1, 64 * MiB)) == FALLBACK_OPTIONS


def test_largest_peak_sets_limit() -> None:
    libc = FakeLibc()
    guard = HeapGuard(libc)
    run_step(guard, libc, peak=4000 * MiB, heap_after=0)
    # A later, smaller step does not lower the limit that the larger one set.
    assert not run_step(guard, libc, peak=1500 * MiB, heap_after=8000 * MiB)
    assert guard.peak_in_use == 4000 * MiB


def test_no_guard_without_kept_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_env, "keeps_freed_memory", lambda: False)
    assert HeapGuard.for_this_process() is None


@dataclass
class RecordingGuard:
    probes: int = 0
    steps: int = 0

    def note_in_use(self) -> None:
        self.probes += 1

    def step_finished(self) -> bool:
        self.steps += 1
        return False


def test_trainer_reports_to_guard(
    tiny_policy_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = RecordingGuard()
    monkeypatch.setattr(trainer_module.HeapGuard, "for_this_process", lambda: guard)
    spec = parse_spec(
        {
            "model": {"name": str(tiny_policy_path)},
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 24,
                "max_invalid_fraction": 0.9,
            },
            "loss": {"name": "pairwise_cringe"},
            "training": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 1, "max_length": 64},
        }
    )
    Trainer(spec, tmp_path / "run").run()
    assert guard.steps == 2
    # Two micro-batches per step, each probed after its forward and its backward pass.
    assert guard.probes == 2 * 2 * 2


# A training-like loop in a process that keeps freed memory: the guard reads glibc's real
# statistics, measures a peak of at least the 256 MiB tensor and leaves the heap alone.
GUARDED_CHILD = """
import json
from cringe_core import process_env
process_env.apply_to_this_process()
import torch
from cringe_core.training.heap_guard import HeapGuard
guard = HeapGuard.for_this_process()
fell_back = []
for _ in range(4):
    tensor = torch.ones(64 * 2**20)
    guard.note_in_use()
    del tensor
    fell_back.append(guard.step_finished())
print(json.dumps({"peak_in_use": guard.peak_in_use, "fell_back": any(fell_back)}))
"""

# torch imported before the settings: PyTorch did not see the huge-page setting, so the
# malloc settings are not applied, and no guard is made.
LATE_CHILD = """
import json
import torch
from cringe_core import process_env
process_env.apply_to_this_process()
from cringe_core.training.heap_guard import HeapGuard
print(json.dumps({"kept": process_env.keeps_freed_memory(),
                  "guard": HeapGuard.for_this_process() is not None}))
"""


def run_child(code: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env=env_without_training_vars(),
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout.splitlines()[-1])
    return result


@pytest.mark.skipif(not glibc_with_mallinfo2(), reason="the guard reads glibc's mallinfo2")
def test_guard_reads_real_heap() -> None:
    result = run_child(GUARDED_CHILD)
    assert isinstance(result["peak_in_use"], int)
    assert result["peak_in_use"] >= 256 * MiB
    assert result["fell_back"] is False


@pytest.mark.skipif(not glibc_with_mallinfo2(), reason="the guard reads glibc's mallinfo2")
def test_no_guard_when_torch_came_first() -> None:
    result = run_child(LATE_CHILD)
    assert result["kept"] is False
    assert result["guard"] is False
