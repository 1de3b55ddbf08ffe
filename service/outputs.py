"""Reads what `cringe train --output-dir DIR` writes, as reports of the running attempt.

    DIR/metrics.jsonl           {"step": N, "metrics": {"loss": x, ...}, "time": iso}
    DIR/status.json             {"state", "step", "max_steps", "error"}
    DIR/checkpoints/step-N/     resumable checkpoints, complete once trainer_state.json exists
    DIR/model/                  the final model

Metrics are read from a byte offset stored with the attempt, in the same transaction as
the points, so a restart neither loses nor repeats a line. All attempts of a job share
DIR, and a resumed run first cuts metrics.jsonl back to its checkpoint, so a line whose
time is before the attempt's launch belongs to an earlier attempt and is skipped (the
dispatcher and the run share one clock, since both are on this machine).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.models import Attempt, Checkpoint, Job
from service.reports import (
    CheckpointIn,
    MetricIn,
    StatusReport,
    record_checkpoint,
    record_metrics,
    record_status,
)

logger = logging.getLogger(__name__)

MAX_READ_BYTES = 4 * 1024 * 1024  # per poll, so one huge backlog cannot stall a tick
_CHECKPOINT_PREFIX = "step-"


def ingest_outputs(session: Session, job: Job, attempt: Attempt, finished: bool) -> None:
    """Record new metrics, phase, progress and checkpoints; the model once `finished`."""
    if job.output_dir is None:
        return
    output_dir = Path(job.output_dir)
    _ingest_metrics(session, job, attempt, output_dir / "metrics.jsonl")
    _ingest_status(session, job, attempt, output_dir / "status.json")
    _ingest_checkpoints(session, job, attempt, output_dir, finished)


def _ingest_metrics(session: Session, job: Job, attempt: Attempt, path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    # A resumed run rewrites the file shorter; read it again from the start then.
    offset = attempt.metrics_offset if attempt.metrics_offset <= size else 0
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(MAX_READ_BYTES)
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
    if not complete and offset == attempt.metrics_offset:
        return

    points: list[MetricIn] = []
    for number, line in enumerate(complete.splitlines(), start=1):
        if line.strip():
            points.extend(_points_of_line(line, attempt, path, number))
    if points:
        record_metrics(session, job, attempt.number, points)
    session.execute(
        update(Attempt).where(Attempt.id == attempt.id)
        .values(metrics_offset=offset + len(complete))
    )
    attempt.metrics_offset = offset + len(complete)


def _points_of_line(line: bytes, attempt: Attempt, path: Path, number: int) -> list[MetricIn]:
    try:
        record = json.loads(line)
        step = int(record["step"])
        metrics = record["metrics"]
        logged_at = record.get("time")
    except (ValueError, KeyError, TypeError):
        logger.warning("%s: skipping a line that is not a metrics record: %.200r", path, line)
        return []
    if isinstance(logged_at, str):
        try:
            if datetime.fromisoformat(logged_at) < attempt.launched_at:
                return []  # written by an earlier attempt
        except (ValueError, TypeError):
            pass
    iteration = record.get("round", record.get("iteration", 0))
    iteration = iteration if isinstance(iteration, int) and iteration >= 0 else 0
    points = []
    for name, value in metrics.items() if isinstance(metrics, dict) else ():
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            clean = None if value is None or not math.isfinite(value) else float(value)
            if len(name) <= 128:
                points.append(MetricIn(name=name, step=step, value=clean, iteration=iteration))
    return points


def _ingest_status(session: Session, job: Job, attempt: Attempt, path: Path) -> None:
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # absent, or being replaced; the next poll reads it
    if path.stat().st_mtime < attempt.launched_at.timestamp():
        return  # left by an earlier attempt
    phase = status.get("state")
    step = status.get("step")
    total_steps = status.get("max_steps")
    report = StatusReport(
        state="running",
        phase=phase if isinstance(phase, str) else None,
        step=step if isinstance(step, int) and step >= 0 else None,
        total_steps=total_steps if isinstance(total_steps, int) and total_steps >= 0 else None,
    )
    record_status(session, job, attempt.number, report)


def _ingest_checkpoints(
    session: Session, job: Job, attempt: Attempt, output_dir: Path, finished: bool
) -> None:
    known = set(session.execute(select(Checkpoint.path).where(Checkpoint.job_id == job.id))
                .scalars())
    found: list[CheckpointIn] = []
    root = output_dir / "checkpoints"
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if (not folder.name.startswith(_CHECKPOINT_PREFIX) or str(folder) in known
                    or not (folder / "trainer_state.json").exists()):
                continue
            try:
                step = int(folder.name[len(_CHECKPOINT_PREFIX):])
            except ValueError:
                continue
            found.append(CheckpointIn(step=step, kind="resumable", path=str(folder),
                                      size_bytes=folder_size_bytes(folder)))
    model = output_dir / "model"
    if finished and model.is_dir() and str(model) not in known:
        step = (job.progress or {}).get("step") or 0
        found.append(CheckpointIn(step=step, kind="model", path=str(model),
                                  size_bytes=folder_size_bytes(model),
                                  metrics=job.latest_metrics))
    for checkpoint in found:
        record_checkpoint(session, job, attempt.number, checkpoint)


def folder_size_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
