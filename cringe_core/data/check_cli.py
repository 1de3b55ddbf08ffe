"""`cringe data check FILE --model M --max-length N`: run the data check from the shell."""

from __future__ import annotations

import json
import sys
from typing import Any

from cringe_core.data.check import check_records
from cringe_core.data.defects import DataError
from cringe_core.data.readers import read_records
from cringe_core.data.tokenize import ChatTemplateError

EXIT_CLEAN = 0
EXIT_DEFECTS = 1  # some rows have fatal defects
EXIT_UNUSABLE = 2  # no report possible: missing or unreadable file, unknown format or model


def load_tokenizer(model_name: str) -> Any:
    # Imported here because loading models pulls in torch, which `--help` does not need.
    from cringe_core.models.loading import load_tokenizer as load

    return load(model_name)


def run_data_check(
    path: str, model_name: str, max_length: int, format: str = "auto", as_json: bool = False
) -> int:
    """Check a data set against a model's chat template and print the report.

    Prints a table, or the report as JSON with `as_json`. Returns the exit code:
    0 when no row has a fatal defect, 1 when some do, 2 when the input is unusable.
    """
    try:
        read_result = read_records(path, format=format)
    except DataError as error:
        return _print_error(error, "data_error", as_json)
    try:
        tokenizer = load_tokenizer(model_name)
    except (OSError, ValueError) as error:
        # What tokenizer loading raises for an unknown model or an unreadable folder.
        return _print_error(error, "model_error", as_json)
    try:
        report = check_records(read_result, tokenizer, max_length)
    except ChatTemplateError as error:
        return _print_error(error, "model_error", as_json)

    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_table())

    if report.records == 0:
        if not as_json:
            print(f"\nno usable rows: all {report.rows_read} rows were skipped or defective")
        return EXIT_DEFECTS if report.has_fatal_defects else EXIT_UNUSABLE
    if report.has_fatal_defects:
        if not as_json:
            print(
                f"\n{len(report.invalid_rows)} invalid row(s) ({report.invalid_fraction:.2%}); "
                "training fails on them unless dataset.max_invalid_fraction is at least that "
                "share, in which case they are dropped"
            )
        return EXIT_DEFECTS
    return EXIT_CLEAN


def _print_error(error: Exception, code: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": {"code": code, "message": str(error)}}, indent=2))
    else:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_UNUSABLE
