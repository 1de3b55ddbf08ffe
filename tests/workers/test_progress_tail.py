"""The progress tail shows `recovering` for at least one poll after a worker-group restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.progress_tail import ProgressTail, record_worker_group_start


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


def test_restart_and_new_steps_in_one_poll(tmp_path: Path) -> None:
    client = RecordingClient()
    tail = ProgressTail(client, tmp_path, total_steps=10)  # type: ignore[arg-type]
    # The thread is not started: the test polls by hand. The attempt's first start of
    # the worker group is no restart.
    record_worker_group_start(tmp_path, None)
    log_steps(tmp_path, range(1, 5))
    tail.poll()

    # The group restarts from step 2 and trains past it before the next poll.
    record_worker_group_start(tmp_path, 2)
    log_steps(tmp_path, range(5, 7))
    tail.poll()
    assert client.phase == "recovering"

    log_steps(tmp_path, range(7, 8))
    tail.poll()
    assert client.phase == "train"
