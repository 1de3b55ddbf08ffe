"""The progress tail shows `recovering` after a worker-group restart, for a minimum time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.progress_tail import MIN_RECOVERING_S, ProgressTail, record_worker_group_start


class RecordingClient:
    """Stands in for ReportClient and keeps the job's phase as the service would."""

    def __init__(self) -> None:
        self.phase: str | None = None

    def status(self, status: str, phase: str | None = None, **_: Any) -> None:
        if phase is not None:  # a report without a phase leaves it unchanged
            self.phase = phase

    def metrics(self, *_: Any, **__: Any) -> None:
        pass

    def event(self, *_: Any, **__: Any) -> None:
        pass

    def checkpoint(self, *_: Any, **__: Any) -> None:
        pass


def log_steps(folder: Path, steps: range) -> None:
    with (folder / "metrics.jsonl").open("a", encoding="utf-8") as handle:
        for step in steps:
            handle.write(json.dumps({"step": step, "metrics": {"loss": 1.0}}) + "\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started_tail(folder: Path) -> tuple[ProgressTail, RecordingClient, FakeClock]:
    """Return a tail that has reported steps 1 to 4 of the attempt's first worker group."""
    client = RecordingClient()
    clock = FakeClock()
    tail = ProgressTail(client, folder, total_steps=10, clock=clock)  # type: ignore[arg-type]
    # The thread is not started: the tests poll by hand. The attempt's first start of
    # the worker group is no restart.
    record_worker_group_start(folder, None)
    log_steps(folder, range(1, 5))
    tail.poll()
    assert client.phase is None
    return tail, client, clock


def test_restart_and_new_steps_in_one_poll(tmp_path: Path) -> None:
    tail, client, clock = started_tail(tmp_path)

    # The group restarts from step 2 and trains past it before the next poll.
    record_worker_group_start(tmp_path, 2)
    log_steps(tmp_path, range(5, 7))
    tail.poll()
    assert client.phase == "recovering"

    # New steps within the minimum time keep the phase.
    clock.now += MIN_RECOVERING_S / 2
    log_steps(tmp_path, range(7, 8))
    tail.poll()
    assert client.phase == "recovering"

    # Once it has passed, the phase goes back even when no new step came in this poll.
    clock.now += MIN_RECOVERING_S
    tail.poll()
    assert client.phase == "train"


def test_recovering_until_past_checkpoint(tmp_path: Path) -> None:
    tail, client, clock = started_tail(tmp_path)
    record_worker_group_start(tmp_path, 4)
    tail.poll()
    assert client.phase == "recovering"

    # The new group is still loading, and time alone does not end the phase.
    clock.now += 10 * MIN_RECOVERING_S
    tail.poll()
    assert client.phase == "recovering"

    log_steps(tmp_path, range(5, 6))
    tail.poll()
    assert client.phase == "train"


def test_second_restart_restarts_hold(tmp_path: Path) -> None:
    tail, client, clock = started_tail(tmp_path)
    record_worker_group_start(tmp_path, 2)
    log_steps(tmp_path, range(5, 6))
    tail.poll()
    clock.now += MIN_RECOVERING_S - 1

    # A second restart before the hold ends starts it again, from its own checkpoint.
    record_worker_group_start(tmp_path, 4)
    tail.poll()
    clock.now += 2
    log_steps(tmp_path, range(6, 7))
    tail.poll()
    assert client.phase == "recovering"

    clock.now += MIN_RECOVERING_S
    tail.poll()
    assert client.phase == "train"


def test_final_poll_ends_hold(tmp_path: Path) -> None:
    tail, client, _ = started_tail(tmp_path)
    record_worker_group_start(tmp_path, 2)
    log_steps(tmp_path, range(5, 11))
    tail.poll()
    assert client.phase == "recovering"

    # The run ended within the minimum time: a finished job does not stay `recovering`.
    tail.poll(final=True)
    assert client.phase == "train"
