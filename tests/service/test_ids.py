"""Ids made in one process sort in the order they were made, even within a millisecond."""

from __future__ import annotations

import time

import pytest

from service import ids
from service.ids import id_pattern, new_id


def test_ids_strictly_increase() -> None:
    checkpoint_ids = [new_id("ckpt") for _ in range(2000)]
    assert checkpoint_ids == sorted(checkpoint_ids)
    assert len(set(checkpoint_ids)) == len(checkpoint_ids)
    assert all(id_pattern("ckpt").match(value) for value in checkpoint_ids)


@pytest.fixture(autouse=True)
def restore_last_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests below move the clock forward; later tests must not inherit that time.
    monkeypatch.setattr(ids, "_last", ids._last)


def test_same_millisecond_counts_on(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_ns = time.time_ns() + 10**12  # later than any id made so far
    monkeypatch.setattr(ids.time, "time_ns", lambda: frozen_ns)
    first, second, third = new_id("job"), new_id("job"), new_id("job")
    assert first < second < third
    # The time part is the same; only the random part counts on.
    assert first[:14] == second[:14] == third[:14]


def test_clock_stepping_back_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    later_ns = time.time_ns() + 2 * 10**12
    monkeypatch.setattr(ids.time, "time_ns", lambda: later_ns)
    before = new_id("job")
    monkeypatch.setattr(ids.time, "time_ns", lambda: later_ns - 5 * 10**9)
    assert new_id("job") > before
