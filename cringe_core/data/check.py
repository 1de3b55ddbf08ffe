"""The data check: tokenize every record exactly as training will and report its defects.

`prepare_dataset` is what training calls: it reads, checks, and either returns the valid
tokenized rows or raises DataError when more rows are invalid than the spec allows.
"""

from __future__ import annotations

import math
from typing import Any

from cringe_core.data.defects import DEFECT_INFO, DataError, Defect
from cringe_core.data.readers import ReadResult, read_records
from cringe_core.data.records import PreferenceRecord, Record, TokenizedExample, TokenizedPair
from cringe_core.data.report import DataReport, DefectRows, LengthStats
from cringe_core.data.tokenize import (
    RecordEncoding,
    TemplateFailure,
    encode_records,
    require_chat_template,
    tokenized_row,
)
from cringe_core.spec import DatasetSpec

__all__ = ["DataError", "DataReport", "check_records", "prepare_dataset"]

TokenizedRow = TokenizedPair | TokenizedExample


def check_records(read_result: ReadResult, tokenizer: Any, max_length: int) -> DataReport:
    """Tokenize every record with the chat template and collect its defects.

    Row problems the reader found are carried into the report. A row with any fatal
    defect is invalid; `over_max_length` alone only truncates the completion.
    Raises ChatTemplateError when the tokenizer has no chat template.
    """
    require_chat_template(tokenizer)
    found: dict[Defect, DefectRows] = {}
    for problem in read_result.problems:
        _add(found, problem.defect, problem.row, problem.detail)

    prompt_lengths: list[int] = []
    completion_lengths: list[int] = []
    total_lengths: list[int] = []
    valid_rows: list[TokenizedRow] = []
    encodings = encode_records(read_result.records, tokenizer, max_length)
    for record, encoding in zip(read_result.records, encodings, strict=True):
        if isinstance(encoding, TemplateFailure):
            _add(found, Defect.CHAT_TEMPLATE_ERROR, record.row, encoding.message)
            continue

        prompt_length = len(encoding.prompt_ids)
        prompt_lengths.append(prompt_length)
        for completion in encoding.completions:
            completion_lengths.append(completion.completion_length)
            total_lengths.append(prompt_length + completion.completion_length)

        row_defects = record_defects(record, encoding)
        for defect in row_defects:
            _add(found, defect, record.row)
        if not any(DEFECT_INFO[defect].fatal for defect in row_defects):
            valid_rows.append(tokenized_row(record, encoding))

    # Report defects in a fixed order (the order of `Defect`), each with rows in file order.
    defects = {defect: found[defect] for defect in Defect if defect in found}
    for rows in defects.values():
        rows.rows.sort()
    invalid_rows = sorted(
        {row for defect, rows in defects.items() if DEFECT_INFO[defect].fatal for row in rows.rows}
    )
    return DataReport(
        path=read_result.path,
        format=read_result.format,
        max_length=max_length,
        rows_read=read_result.rows_read,
        records=len(read_result.records),
        skipped={str(reason): count for reason, count in read_result.skipped.items()},
        defects=defects,
        invalid_rows=invalid_rows,
        valid_rows=valid_rows,
        lengths={
            "prompt": LengthStats.of(prompt_lengths),
            "completion": LengthStats.of(completion_lengths),
            "total": LengthStats.of(total_lengths),
        },
    )


def record_defects(record: Record, encoding: RecordEncoding) -> list[Defect]:
    """Return the defects that tokenization reveals in one record, in `Defect` order."""
    completions = encoding.completions
    defects = []
    if isinstance(record, PreferenceRecord):
        chosen, rejected = completions
        if record.chosen == record.rejected:
            defects.append(Defect.CHOSEN_EQUALS_REJECTED)
        elif chosen.completion_ids == rejected.completion_ids and chosen.completion_ids:
            # Also catches texts that differ but tokenize to the same ids.
            defects.append(Defect.EQUAL_AFTER_TRUNCATION)
    if not all(completion.prompt_is_prefix for completion in completions):
        defects.append(Defect.PROMPT_NOT_PREFIX)
    if any(completion.doubled_end_of_turn for completion in completions):
        defects.append(Defect.DOUBLED_END_OF_TURN)
    if any(completion.emptied_by_truncation for completion in completions):
        defects.append(Defect.COMPLETION_EMPTIED_BY_TRUNCATION)
    if encoding.over_max_length:
        defects.append(Defect.OVER_MAX_LENGTH)
    return defects


def _add(found: dict[Defect, DefectRows], defect: Defect, row: int, detail: str = "") -> None:
    rows = found.setdefault(defect, DefectRows())
    if not rows.rows or row < rows.rows[0]:
        rows.example = detail
    rows.rows.append(row)


def prepare_dataset(
    spec: DatasetSpec, tokenizer: Any, max_length: int
) -> tuple[list[TokenizedRow], DataReport]:
    """Read and check the data set of a job and return its valid tokenized rows.

    Invalid rows are dropped and counted in `report.dropped_rows` when their share of the
    rows read (skipped rows not counted) is at most `spec.max_invalid_fraction`.
    Raises DataError when that share is larger, when no valid row is left, and when the
    file is missing, empty, unreadable or in an unknown format.
    """
    read_result = read_records(
        spec.path, format=spec.format, max_rows=spec.max_rows, split=spec.split
    )
    report = check_records(read_result, tokenizer, max_length)

    if report.invalid_fraction > spec.max_invalid_fraction:
        raise DataError(_too_many_invalid_message(report, spec.max_invalid_fraction), report)
    if not report.valid_rows:
        raise DataError(_no_valid_rows_message(report), report)

    report.dropped_rows = len(report.invalid_rows)
    return report.valid_rows, report


def _too_many_invalid_message(report: DataReport, allowed: float) -> str:
    invalid = len(report.invalid_rows)
    lines = [
        f"dataset {report.path!r}: {invalid} of {report.checked_rows} rows "
        f"({report.invalid_fraction:.2%}) are invalid, more than "
        f"dataset.max_invalid_fraction = {allowed:g} allows:",
        *report.defect_lines(fatal_only=True),
        f"Fix: clean these rows, or set dataset.max_invalid_fraction to at least "
        f"{_round_up(report.invalid_fraction):g} to drop them and train on the rest.",
    ]
    return "\n".join(lines)


def _no_valid_rows_message(report: DataReport) -> str:
    if report.checked_rows == 0:
        skipped = ", ".join(f"{count} {reason}" for reason, count in report.skipped.items())
        return (
            f"dataset {report.path!r}: all {report.rows_read} rows were skipped ({skipped}), "
            "so there is nothing to train on; use a data set with preferences"
        )
    return "\n".join(
        [
            f"dataset {report.path!r}: none of its {report.checked_rows} rows is valid:",
            *report.defect_lines(fatal_only=True),
            "Fix: clean these rows, or check that the format and max_length are right.",
        ]
    )


def _round_up(fraction: float) -> float:
    """Round a fraction up to 4 decimals, so that the suggested limit admits it."""
    return min(1.0, math.ceil(fraction * 10_000) / 10_000)
