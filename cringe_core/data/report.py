"""The data check's report: defects with counts and row numbers, skips, and token lengths."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cringe_core.data.defects import DEFECT_INFO, Defect
from cringe_core.data.records import TokenizedExample, TokenizedPair

FIRST_ROWS_SHOWN = 10
PERCENTILES = (50, 90, 99)


@dataclass
class DefectRows:
    """Rows that have one defect, in file order, and the detail of the first one."""

    rows: list[int] = field(default_factory=list)
    # The reader's message for the first row; empty for defects found by tokenizing.
    example: str = ""

    @property
    def first_rows(self) -> list[int]:
        return self.rows[:FIRST_ROWS_SHOWN]


@dataclass(frozen=True)
class LengthStats:
    """Token-length percentiles; `count` is how many sequences were measured."""

    count: int
    p50: int
    p90: int
    p99: int
    max: int

    @classmethod
    def of(cls, lengths: list[int]) -> LengthStats:
        if not lengths:
            return cls(count=0, p50=0, p90=0, p99=0, max=0)
        # "higher" returns an observed length, so p99 is a length some row really has.
        p50, p90, p99 = (
            int(value) for value in np.percentile(lengths, PERCENTILES, method="higher")
        )
        return cls(count=len(lengths), p50=p50, p90=p90, p99=p99, max=max(lengths))


@dataclass
class DataReport:
    """Everything the data check found in one data set.

    `defects` maps each defect found to its rows. `invalid_rows` are the rows with at
    least one fatal defect, and `valid_rows` the tokenized rows of all the others.
    Lengths are measured before truncation, over every record the template could encode.
    """

    path: str
    format: str
    max_length: int
    rows_read: int
    records: int
    skipped: dict[str, int]
    defects: dict[Defect, DefectRows]
    invalid_rows: list[int]
    valid_rows: list[TokenizedPair | TokenizedExample]
    lengths: dict[str, LengthStats]
    dropped_rows: int = 0  # invalid rows that prepare_dataset left out of training

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())

    @property
    def checked_rows(self) -> int:
        """Rows that were meant for training: rows read minus the skipped ones."""
        return self.rows_read - self.skipped_count

    @property
    def invalid_fraction(self) -> float:
        return len(self.invalid_rows) / self.checked_rows if self.checked_rows else 0.0

    @property
    def has_fatal_defects(self) -> bool:
        return bool(self.invalid_rows)

    def fatal_defects(self) -> dict[Defect, DefectRows]:
        return {defect: rows for defect, rows in self.defects.items() if DEFECT_INFO[defect].fatal}

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serializable data, without the tokenized rows."""
        return {
            "path": self.path,
            "format": self.format,
            "max_length": self.max_length,
            "rows_read": self.rows_read,
            "records": self.records,
            "skipped": dict(self.skipped),
            "valid_rows": len(self.valid_rows),
            "invalid_rows": len(self.invalid_rows),
            "invalid_fraction": self.invalid_fraction,
            "dropped_rows": self.dropped_rows,
            "defects": [
                {
                    "code": str(defect),
                    "fatal": DEFECT_INFO[defect].fatal,
                    "count": len(rows.rows),
                    "first_rows": rows.first_rows,
                    "description": DEFECT_INFO[defect].description,
                    "example": rows.example,
                }
                for defect, rows in self.defects.items()
            ],
            "lengths": {name: vars(stats) for name, stats in self.lengths.items()},
        }

    def defect_lines(self, fatal_only: bool = False) -> list[str]:
        """Return one line per defect: code, row count, first rows and what is wrong."""
        lines = []
        for defect, rows in self.defects.items():
            if fatal_only and not DEFECT_INFO[defect].fatal:
                continue
            shown = ", ".join(str(row) for row in rows.first_rows)
            more = ", ..." if len(rows.rows) > FIRST_ROWS_SHOWN else ""
            detail = rows.example or DEFECT_INFO[defect].description
            lines.append(
                f"  {defect}: {len(rows.rows)} row(s) (rows {shown}{more}); "
                f"row {rows.rows[0]}: {detail}"
            )
        return lines

    def format_table(self) -> str:
        """Render the report as text for the command line."""
        lines = [
            f"data check of {self.path} (format {self.format}, max_length {self.max_length})",
            f"rows read {self.rows_read}, skipped {self.skipped_count}, "
            f"valid {len(self.valid_rows)}, invalid {len(self.invalid_rows)}",
        ]
        if self.skipped:
            skipped = ", ".join(f"{reason} {count}" for reason, count in self.skipped.items())
            lines.append(f"skipped on purpose: {skipped}")
        lines.append("")

        if self.defects:
            lines.append(f"{'defect':<34}{'rows':>7}  {'fatal':<6}first rows")
            for defect, rows in self.defects.items():
                fatal = "yes" if DEFECT_INFO[defect].fatal else "no"
                shown = ", ".join(str(row) for row in rows.first_rows)
                more = ", ..." if len(rows.rows) > FIRST_ROWS_SHOWN else ""
                lines.append(f"{defect:<34}{len(rows.rows):>7}  {fatal:<6}{shown}{more}")
        else:
            lines.append("no defects found")
        lines.append("")

        lines.append(f"{'tokens':<12}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
        for name, stats in self.lengths.items():
            lines.append(f"{name:<12}{stats.p50:>8}{stats.p90:>8}{stats.p99:>8}{stats.max:>8}")
        return "\n".join(lines)
