"""Streams a training run's progress to the service while Ray Train runs it.

Rank 0 writes `metrics.jsonl`, `checkpoints/step-N/` and one line per start of the worker
group in `worker_group_starts.jsonl` under the run folder (storage every node sees).
This thread polls those files from the attempt's driver and reports what is new: metric
points and progress, resumable checkpoints, and a `worker_group_restarted` event when
Ray Train replaced a failed worker group; the job's phase is `recovering` from then until
the new group logs a step past the checkpoint it resumed from, and for at least
`MIN_RECOVERING_S`. The report client keys every write, so a step a restarted group
trains again is not sent twice.

Reporting from the driver rather than from rank 0 keeps the buffer of unsent reports
alive when a training worker is killed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.logs import stamped
from workers.report_client import ReportClient

log = stamped(__name__)

WORKER_GROUP_STARTS_FILE = "worker_group_starts.jsonl"
_CHECKPOINT_PREFIX = "step-"
# A small model's new worker group can train past its checkpoint within a second, so the
# phase is held long enough for a client polling every 2 s (the dashboard) to see it.
MIN_RECOVERING_S = 5.0


def record_worker_group_start(output_dir: Path, resume_step: int | None) -> None:
    """Append one line for a start of the worker group (rank 0 calls it)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / WORKER_GROUP_STARTS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"resume_step": resume_step}) + "\n")


class ProgressTail:
    def __init__(self, client: ReportClient, output_dir: Path, total_steps: int,
                 round_index: int = 0, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.output_dir = output_dir
        self.total_steps = total_steps
        self.round_index = round_index
        self.interval_s = interval_s
        self._clock = clock
        self._reported_steps: set[int] = set()
        self._checkpoints: set[str] = set()
        self._starts_seen = 0
        self._first_start = 0  # index of this attempt's first start in the file
        # Set from a restart of the worker group until the phase goes back to `train`.
        self._recovering_from: int | None = None
        self._recovering_since = 0.0  # clock time of the restart's report
        self._trained_past_checkpoint = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress-tail", daemon=True)

    def __enter__(self) -> ProgressTail:
        # Starts from earlier attempts are not restarts of this one.
        self._starts_seen = len(self._read_lines(WORKER_GROUP_STARTS_FILE))
        self._first_start = self._starts_seen
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        # What the last interval wrote. The run is over, so a finished recovery is not held.
        self.poll(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except (OSError, ValueError) as error:  # a file mid-write; read it next time
                log.info("progress not read this time: %s", error)

    def poll(self, final: bool = False) -> None:
        self._report_restarts()
        self._report_metrics(final)
        self._report_checkpoints()

    def _read_lines(self, name: str) -> list[dict[str, Any]]:
        path = self.output_dir / name
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        # Only whole lines: the writer may be in the middle of the last one.
        return [json.loads(line) for line in lines if line.endswith("}")]

    def _report_metrics(self, final: bool) -> None:
        newest = None
        for line in self._read_lines("metrics.jsonl"):
            step = int(line["step"])
            if step in self._reported_steps:
                continue
            self._reported_steps.add(step)
            self.client.metrics(step, line["metrics"], iteration=self.round_index)
            newest = max(step, newest or 0)
        recovering_from = self._recovering_from
        if recovering_from is not None and newest is not None and newest > recovering_from:
            self._trained_past_checkpoint = True
        phase = self._phase_after_recovery(final)
        if newest is None and phase is None:
            return
        latest = newest if newest is not None else max(self._reported_steps, default=None)
        self.client.status("running", phase=phase, step=latest, total_steps=self.total_steps,
                           round_index=self.round_index or None)

    def _phase_after_recovery(self, final: bool) -> str | None:
        """Return `train` once a restarted group has trained on and the hold has passed."""
        if self._recovering_from is None or not self._trained_past_checkpoint:
            return None
        held_s = self._clock() - self._recovering_since
        if held_s < MIN_RECOVERING_S and not final:
            return None
        self._recovering_from = None
        self._trained_past_checkpoint = False
        return "train"

    def _report_checkpoints(self) -> None:
        root = self.output_dir / "checkpoints"
        if not root.is_dir():
            return
        for path in sorted(root.iterdir()):
            if not (path.is_dir() and path.name.startswith(_CHECKPOINT_PREFIX)):
                continue  # staging folders start with a dot and are renamed when complete
            if path.name in self._checkpoints:
                continue
            self._checkpoints.add(path.name)
            step = int(path.name[len(_CHECKPOINT_PREFIX):])
            self.client.checkpoint(step, "resumable", str(path),
                                   round_index=self.round_index or None)

    def _report_restarts(self) -> None:
        """Report restarts of the worker group not reported yet."""
        starts = self._read_lines(WORKER_GROUP_STARTS_FILE)
        for number, start in enumerate(starts[self._starts_seen:], self._starts_seen):
            if number == self._first_start:
                continue  # this attempt's first start of the group is not a recovery
            resume_step = start.get("resume_step")
            log.warning("the worker group restarted (start %d), resuming from step %s",
                        number + 1, resume_step)
            self.client.status("running", phase="recovering", step=resume_step,
                               round_index=self.round_index or None)
            self.client.event(
                "worker_group_restarted",
                f"a training worker failed; Ray Train restarted the worker group from the "
                f"checkpoint at step {resume_step}",
                step=number, level="warning", data={"resume_step": resume_step},
            )
            self._recovering_from = resume_step or 0
            self._recovering_since = self._clock()
            self._trained_past_checkpoint = False
        self._starts_seen = max(self._starts_seen, len(starts))
