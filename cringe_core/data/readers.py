"""Read preference and binary-feedback data sets into canonical records.

`read_records` accepts a JSON array, a JSONL file, the gzip of either, or a Hugging Face
hub data set id. It detects the layout from the first readable rows unless `format`
names it. Every row it cannot convert is kept as a `RowProblem` with its row number, so
that the data check can report all of them at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cringe_core.data.defects import DataError, SkipReason
from cringe_core.data.formats import FORMATS, RecordFormat, Skipped
from cringe_core.data.messages import RowDefect
from cringe_core.data.records import Record
from cringe_core.data.sources import RawRow, RowProblem, load_rows

# Detection looks at this many readable rows, so a few odd rows at the top do not decide.
DETECTION_ROWS = 20


@dataclass
class ReadResult:
    path: str
    format: str
    records: list[Record]
    problems: list[RowProblem]
    skipped: dict[SkipReason, int] = field(default_factory=dict)
    rows_read: int = 0  # rows seen in the source, skipped and defective ones included


def read_records(
    path: str | Path, format: str = "auto", max_rows: int | None = None, split: str = "train"
) -> ReadResult:
    """Read up to `max_rows` rows of `path` and convert them to records.

    `format` is "auto" or a name in `FORMATS`. `split` only applies to hub data sets.
    Raises DataError when the source is missing, empty or unreadable, when its layout is
    unknown, and when an alpaca file has no preference at all (unlabelled pairs).
    """
    if format != "auto" and format not in FORMATS:
        raise DataError(
            f"unknown dataset format {format!r}; expected 'auto' or one of {sorted(FORMATS)}"
        )
    rows = load_rows(path, max_rows=max_rows, split=split)
    record_format = FORMATS[format] if format != "auto" else detect_format(rows, str(path))

    result = ReadResult(
        path=str(path), format=record_format.name, records=[], problems=[], rows_read=len(rows)
    )
    skipped: Counter[SkipReason] = Counter()
    for number, row in rows:
        if isinstance(row, RowProblem):
            result.problems.append(row)
            continue
        try:
            converted = record_format.convert(row, number)
        except RowDefect as defect:
            result.problems.append(RowProblem(number, defect.defect, defect.detail))
            continue
        if isinstance(converted, Skipped):
            skipped[converted.reason] += 1
        else:
            result.records.append(converted)

    result.skipped = dict(skipped)
    _reject_unlabelled(result)
    return result


def detect_format(rows: list[RawRow], path: str) -> RecordFormat:
    """Pick the layout that most of the first readable rows match, in `FORMATS` order."""
    sample = [row for _, row in rows if isinstance(row, dict)][:DETECTION_ROWS]
    if not sample:
        raise DataError(
            f"cannot detect the format of {path!r}: none of its first rows is a JSON object"
        )

    votes = {name: sum(fmt.matches(row) for row in sample) for name, fmt in FORMATS.items()}
    best = max(votes, key=lambda name: votes[name])  # max keeps the first of equal counts
    if votes[best] > 0:
        return FORMATS[best]

    keys = sorted({key for row in sample for key in row})
    known = "\n".join(f"  {name}: {fmt.layout}" for name, fmt in FORMATS.items())
    hint = ""
    if {"instruction", "output"} <= set(keys) or keys == ["prompt"]:
        hint = (
            ". These rows look like prompts without preferences (an evaluation set); "
            "read them with cringe_core.data.prompts.read_prompts instead"
        )
    raise DataError(
        f"unknown dataset format in {path!r}: its rows have keys {keys}. Known formats and "
        f"their keys:\n{known}\nRename the fields to one of these layouts, or set the format "
        f"explicitly to see which field is missing in each row{hint}"
    )


def _reject_unlabelled(result: ReadResult) -> None:
    missing = result.skipped.get(SkipReason.MISSING_PREFERENCE, 0)
    if result.format == "alpaca" and missing and missing == result.rows_read:
        raise DataError(
            f"{result.path!r} has output_1 and output_2 but no preference in any of its "
            f"{missing} rows: these are unlabelled pairs and cannot be trained on. Add a "
            "'preference' (1 for output_1, 2 for output_2) to each row, or read the file "
            "with read_prompts to use its instructions as prompts"
        )
