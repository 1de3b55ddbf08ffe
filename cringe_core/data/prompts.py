"""Read prompt sets for generation and evaluation, such as the AlpacaFarm evaluation set.

Two layouts are accepted, each a JSON array, JSONL, or the gzip of either:
- `instruction`, optional `input`, optional `output` (a reference answer, as in the
  AlpacaFarm / AlpacaEval evaluation set);
- `prompt` as a string or a message list ending with a user turn, optional `reference`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from cringe_core.data.defects import DataError, Defect
from cringe_core.data.formats import alpaca_prompt_text
from cringe_core.data.messages import (
    RowDefect,
    parse_messages,
    require,
    user_prompt,
    validate_prompt,
)
from cringe_core.data.records import Message, PromptRecord
from cringe_core.data.sources import RowProblem, load_rows

_FIRST_ROWS_SHOWN = 10


def read_prompts(
    path: str | Path, max_rows: int | None = None, split: str = "train"
) -> list[PromptRecord]:
    """Read up to `max_rows` prompts from a file or hub data set.

    Raises DataError naming every defective row (counts per defect and the first row
    numbers), since an evaluation on a silently shortened prompt set would mislead.
    """
    records: list[PromptRecord] = []
    problems: list[RowProblem] = []
    for number, row in load_rows(path, max_rows=max_rows, split=split):
        if isinstance(row, RowProblem):
            problems.append(row)
            continue
        try:
            records.append(_convert_prompt_row(row, number))
        except RowDefect as defect:
            problems.append(RowProblem(number, defect.defect, defect.detail))

    if problems:
        raise DataError(_describe_problems(str(path), problems))
    return records


def _convert_prompt_row(row: dict[str, Any], number: int) -> PromptRecord:
    if "instruction" in row:
        prompt = user_prompt(alpaca_prompt_text(row))
        reference = _optional_reference(row, "output")
    elif "prompt" in row:
        prompt = _prompt_messages(require(row, "prompt"))
        reference = _optional_reference(row, "reference")
    else:
        raise RowDefect(
            Defect.MISSING_FIELD,
            f"row has neither 'instruction' nor 'prompt' (keys: {sorted(row)})",
        )
    return PromptRecord(prompt=validate_prompt(prompt), reference=reference, row=number)


def _prompt_messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        return user_prompt(value)
    return parse_messages(value, "prompt")


def _optional_reference(row: dict[str, Any], field: str) -> str | None:
    # A list of outputs (several samples per instruction) is not a single reference
    # answer, so such rows get no reference.
    value = row.get(field)
    return value if isinstance(value, str) else None


def _describe_problems(path: str, problems: list[RowProblem]) -> str:
    rows_by_defect: dict[Defect, list[int]] = defaultdict(list)
    for problem in problems:
        rows_by_defect[problem.defect].append(problem.row)

    lines = [f"{len(problems)} prompt row(s) in {path!r} are invalid:"]
    for defect, rows in rows_by_defect.items():
        shown = ", ".join(str(row) for row in rows[:_FIRST_ROWS_SHOWN])
        lines.append(f"  {defect}: {len(rows)} row(s), first rows {shown}")
    first = problems[0]
    lines.append(f"Row {first.row}: {first.detail}. Fix these rows and read the file again.")
    return "\n".join(lines)
