"""Text views of jobs for a terminal: the jobs table, one job's detail, a progress bar."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

BAR_WIDTH = 30


def _when(stamp: str | None, now: datetime | None = None) -> str:
    """Render an RFC 3339 time as an age ('42s ago', '3m ago', '5h ago', '2d ago')."""
    if not stamp:
        return "-"
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def progress_text(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    step, total = progress.get("step"), progress.get("total_steps")
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def _win_rate(job: dict[str, Any]) -> str:
    value = (job.get("latest_metrics") or {}).get("win_rate")
    return "-" if value is None else f"{value:.3f}"


def _round(job: dict[str, Any]) -> str:
    value = (job.get("progress") or {}).get("round")
    return "-" if value is None else str(value)


def jobs_table(jobs: list[dict[str, Any]], now: datetime | None = None) -> str:
    header = ("ID", "KIND", "STATUS", "PHASE", "PROGRESS", "ROUND", "WIN RATE", "UPDATED")
    rows = [header] + [
        (job["id"], job["kind"], job["status"], job.get("phase") or "-", progress_text(job),
         _round(job), _win_rate(job), _when(job.get("updated_at"), now))
        for job in jobs
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def job_detail(job: dict[str, Any], evaluations: list[dict[str, Any]]) -> str:
    lines = [
        f"job       {job['id']} ({job['kind']})",
        f"status    {job['status']}" + (f", phase {job['phase']}" if job.get("phase") else ""),
        f"progress  step {progress_text(job)}, round {_round(job)}, attempt {job['attempt']}",
        f"created   {job['created_at']}",
        f"started   {job.get('started_at') or '-'}",
        f"finished  {job.get('finished_at') or '-'}",
    ]
    metrics = job.get("latest_metrics") or {}
    if metrics:
        shown = ", ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
                          for name, value in sorted(metrics.items()))
        lines.append(f"metrics   {shown}")
    error = job.get("error")
    if error:
        lines.append(f"error     {error['code']}: {error['message']}")
        lines.extend(f"          {detail}" for detail in error.get("details") or [])
    if evaluations:
        lines.append("round  win rate  95% interval      n  candidate vs reference")
        for row in sorted(evaluations, key=lambda e: (e["round"] is None, e["round"] or 0)):
            shown_round = "-" if row["round"] is None else str(row["round"])
            lines.append(
                f"{shown_round:>5}  {row['win_rate']:8.3f}  [{row['ci_low']:.3f}, "
                f"{row['ci_high']:.3f}]  {row['n']:>4}  {row['candidate']} vs {row['reference']}"
            )
    return "\n".join(lines)


def progress_bar(job: dict[str, Any]) -> str:
    """Render one line: status, a bar of step / total steps when known, phase and round."""
    progress = job.get("progress") or {}
    step, total = progress.get("step") or 0, progress.get("total_steps")
    if total:
        filled = min(BAR_WIDTH, int(BAR_WIDTH * step / total))
        bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {step}/{total}"
    else:
        bar = f"step {step}"
    extra = "".join(
        f", {label} {value}" for label, value in
        (("phase", job.get("phase")), ("round", progress.get("round"))) if value is not None
    )
    return f"{job['status']:<10} {bar}{extra}"


def event_line(event: dict[str, Any]) -> str:
    return f"{event['created_at']}  #{event['seq']:<4} {event['type']}: {event['message']}"
