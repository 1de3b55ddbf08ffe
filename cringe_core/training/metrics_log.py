"""Metrics as JSON lines: one object per logged step, appended and flushed at once."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop lines past `step`, so a resumed run does not log a step twice."""
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        # JSON has no NaN or infinity; write them as null so every reader can parse the line.
        clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
        record = {"step": step, "metrics": clean, "time": datetime.now(UTC).isoformat()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
