"""Helpers for the data-layer tests: files to write and read, tokenizer variants."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any


def with_chat_template(tokenizer: Any, template: str | None) -> Any:
    """Return a copy of `tokenizer` with another chat template (None removes it)."""
    changed = copy.deepcopy(tokenizer)
    changed.chat_template = template
    return changed


def load_json_rows(path: Path) -> list[dict[str, Any]]:
    """Read a shared data file with json alone, as an independent count for the readers."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        if ".jsonl" in path.name:
            return [json.loads(line) for line in handle if line.strip()]
        rows: list[dict[str, Any]] = json.load(handle)
        return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write rows as JSONL; a string row is written as is, so a test can write a bad line."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
