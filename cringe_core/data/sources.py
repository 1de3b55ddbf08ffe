"""Raw rows from a JSON array, a JSONL file (either gzip-compressed or not) or a hub data set.

Each row comes with its 1-based row number: the position in a JSON array or hub split, or
the line number in a JSONL file, so that a report points at the line an editor shows.
A row that is not a JSON object comes back as a `RowProblem` instead of a mapping.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from cringe_core.data.defects import DataError, Defect

_GZIP_MAGIC = b"\x1f\x8b"
_DATA_SUFFIXES = (".json", ".jsonl", ".gz")
# A hub data set id: one "owner/name", no leading dot or slash (those are local paths).
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class RowProblem:
    row: int
    defect: Defect
    detail: str


RawRow = tuple[int, dict[str, Any] | RowProblem]


def looks_like_hub_name(path: str) -> bool:
    """Return whether a path that is not a local file reads as a hub id `owner/name`."""
    return bool(_HUB_NAME.match(path)) and not path.lower().endswith(_DATA_SUFFIXES)


def load_rows(path: str | Path, max_rows: int | None = None, split: str = "train") -> list[RawRow]:
    """Load up to `max_rows` rows of a local file, or of a hub data set when no file exists.

    Raises DataError when the file is missing, empty, or not JSON / JSONL at all, and when
    a hub data set cannot be loaded.
    """
    local = Path(path)
    if local.is_file():
        return list(islice(_iter_file_rows(local), max_rows))
    if local.exists():
        raise DataError(f"dataset path {str(path)!r} is not a file; pass a JSON or JSONL file")
    if looks_like_hub_name(str(path)):
        return _load_hub_rows(str(path), split, max_rows)
    raise DataError(
        f"dataset file {str(path)!r} not found; check the path (relative paths start from "
        f"{Path.cwd()}) or pass a hub data set id of the form owner/name"
    )


def _read_text_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"dataset file {str(path)!r} cannot be read: {error}") from None
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise DataError(f"dataset file {str(path)!r} is a damaged gzip file: {error}") from None
    return data


def _iter_file_rows(path: Path) -> Iterator[RawRow]:
    data = _read_text_bytes(path)
    stripped = data.lstrip()
    if not stripped:
        raise DataError(f"dataset file {str(path)!r} is empty; it must contain at least one row")

    if stripped.startswith(b"["):
        yield from _json_array_rows(path, data)
        return
    yield from _jsonl_rows(path, data)


def _json_array_rows(path: Path, data: bytes) -> Iterator[RawRow]:
    try:
        rows = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(f"dataset file {str(path)!r} is not UTF-8 text: {error}") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"dataset file {str(path)!r} starts with '[' but is not a valid JSON array: "
            f"{error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    if not rows:
        raise DataError(f"dataset file {str(path)!r} is an empty JSON array; it has no rows")
    for index, row in enumerate(rows, start=1):
        yield index, _as_mapping(index, row)


def _jsonl_rows(path: Path, data: bytes) -> Iterator[RawRow]:
    lines = data.split(b"\n")
    first = next((line for line in lines if line.strip()), b"")
    if first.strip().startswith(b"{") and not _parses(first):
        _reject_single_json_object(path, data)

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            yield number, RowProblem(number, Defect.UNREADABLE_ROW, f"bad JSON line: {error}")
            continue
        yield number, _as_mapping(number, row)


def _parses(line: bytes) -> bool:
    try:
        json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def _reject_single_json_object(path: Path, data: bytes) -> None:
    # A pretty-printed JSON object spans many lines, so reading it as JSONL would report
    # every line as bad; name the real problem instead.
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    if isinstance(value, dict):
        raise DataError(
            f"dataset file {str(path)!r} contains a single JSON object with keys "
            f"{sorted(value)}; expected a JSON array of rows or one JSON object per line"
        )


def _as_mapping(row_number: int, row: Any) -> dict[str, Any] | RowProblem:
    if isinstance(row, dict):
        return row
    return RowProblem(
        row_number, Defect.UNREADABLE_ROW, f"row is a JSON {type(row).__name__}, not an object"
    )


def _load_hub_rows(name: str, split: str, max_rows: int | None) -> list[RawRow]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{name!r} is not a local file and looks like a Hugging Face hub data set, but "
            "reading hub data sets needs the `datasets` package; install it with "
            "`pip install 'cringe[hub]'` or download the data set and pass a local file"
        ) from None

    # `load_dataset` raises many exception types (ConnectionError when the hub is
    # unreachable, FileNotFoundError for an unknown name, ValueError for an unknown split),
    # so every failure becomes one DataError that keeps the original message.
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as error:
        raise DataError(
            f"cannot load hub data set {name!r} (split {split!r}): {error}. The hub may be "
            "unreachable from this machine or the name or split may be wrong; download the "
            "data set and pass a local JSON or JSONL file instead"
        ) from None

    return [
        (index, _as_mapping(index, row))
        for index, row in enumerate(islice(dataset, max_rows), start=1)
    ]
