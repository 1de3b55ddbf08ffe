"""Defect codes for preference data, the error raised for unusable data, and skip reasons.

Readers and the data check use the same codes, so a report, an API error and a test all
name a defect the same way. Every defect except `over_max_length` makes its row invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cringe_core.data.report import DataReport


class Defect(StrEnum):
    # Found while reading a row.
    UNREADABLE_ROW = "unreadable_row"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    INVALID_CONVERSATION = "invalid_conversation"
    PROMPT_MISMATCH = "prompt_mismatch"
    EMPTY_PROMPT = "empty_prompt"
    EMPTY_COMPLETION = "empty_completion"
    # Found while tokenizing a row with the model's chat template.
    CHAT_TEMPLATE_ERROR = "chat_template_error"
    CHOSEN_EQUALS_REJECTED = "chosen_equals_rejected"
    EQUAL_AFTER_TRUNCATION = "equal_after_truncation"
    PROMPT_NOT_PREFIX = "prompt_not_prefix"
    DOUBLED_END_OF_TURN = "doubled_end_of_turn"
    COMPLETION_EMPTIED_BY_TRUNCATION = "completion_emptied_by_truncation"
    OVER_MAX_LENGTH = "over_max_length"


@dataclass(frozen=True)
class DefectInfo:
    description: str
    fatal: bool  # a fatal defect makes its row invalid; the others are warnings


DEFECT_INFO: dict[Defect, DefectInfo] = {
    Defect.UNREADABLE_ROW: DefectInfo("row is not a JSON object (bad JSON line)", True),
    Defect.MISSING_FIELD: DefectInfo("a required field is missing or null", True),
    Defect.WRONG_TYPE: DefectInfo("a field has the wrong type", True),
    Defect.INVALID_VALUE: DefectInfo("a field value is out of its accepted range", True),
    Defect.INVALID_CONVERSATION: DefectInfo(
        "messages have unknown roles or the prompt does not end with a user turn", True
    ),
    Defect.PROMPT_MISMATCH: DefectInfo(
        "chosen and rejected differ before their final assistant turn", True
    ),
    Defect.EMPTY_PROMPT: DefectInfo("prompt is empty", True),
    Defect.EMPTY_COMPLETION: DefectInfo("a completion is empty", True),
    Defect.CHAT_TEMPLATE_ERROR: DefectInfo("the chat template raised an error on the row", True),
    Defect.CHOSEN_EQUALS_REJECTED: DefectInfo("chosen is identical to rejected", True),
    Defect.EQUAL_AFTER_TRUNCATION: DefectInfo(
        "chosen and rejected tokens are identical after truncation to max_length", True
    ),
    Defect.PROMPT_NOT_PREFIX: DefectInfo(
        "prompt tokens are not a prefix of prompt + completion tokens", True
    ),
    Defect.DOUBLED_END_OF_TURN: DefectInfo(
        "completion text already contains the end-of-turn token the template appends", True
    ),
    Defect.COMPLETION_EMPTIED_BY_TRUNCATION: DefectInfo(
        "prompt fills max_length, so truncation leaves no completion token", True
    ),
    Defect.OVER_MAX_LENGTH: DefectInfo(
        "prompt + completion is longer than max_length; the completion is truncated", False
    ),
}


class SkipReason(StrEnum):
    """Reason a row was left out on purpose. A skipped row is not a defect."""

    TIE = "tie"
    MISSING_PREFERENCE = "missing_preference"


class DataError(ValueError):
    """Data that cannot be trained on: missing, unreadable, unknown format, or too many bad rows.

    `report` is the data check's report when the error comes from the check, else None.
    """

    def __init__(self, message: str, report: DataReport | None = None) -> None:
        super().__init__(message)
        self.report = report
