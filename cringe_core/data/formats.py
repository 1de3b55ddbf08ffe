"""Record layouts: how to recognize each one and convert its rows to canonical records.

`FORMATS` is the only list of layouts; auto-detection, the unknown-format error and the
tests all read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cringe_core.data.defects import Defect, SkipReason
from cringe_core.data.messages import (
    RowDefect,
    parse_hh_transcript,
    parse_message,
    parse_messages,
    require,
    require_str,
    shared_prompt,
    split_final_assistant,
    user_prompt,
    validate_completion,
    validate_prompt,
)
from cringe_core.data.records import BinaryRecord, Message, PreferenceRecord, Record

HH_ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class Skipped:
    """A row left out on purpose (a tie, a missing preference); not a defect."""

    reason: SkipReason


@dataclass(frozen=True)
class RecordFormat:
    name: str
    layout: str  # the keys a row carries, for error messages
    matches: Callable[[dict[str, Any]], bool]
    convert: Callable[[dict[str, Any], int], Record | Skipped]


# ---- pairs ---------------------------------------------------------------------------


def _pairs_matches(row: dict[str, Any]) -> bool:
    if not {"chosen", "rejected"} <= row.keys() or "conversations" in row:
        return False
    return "prompt" in row or isinstance(row["chosen"], list)


def _completion_text(value: Any, field: str) -> str:
    """Read a completion given as a string or as a one-message assistant list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        messages = parse_messages(value, field)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise RowDefect(
                Defect.INVALID_CONVERSATION,
                f"{field} must be one assistant message when the row has a prompt, "
                f"got {len(messages)} message(s)",
            )
        return messages[0]["content"]
    raise RowDefect(
        Defect.WRONG_TYPE,
        f"field {field!r} must be a string or a message list, got {type(value).__name__}",
    )


def _prompt_messages(value: Any, field: str) -> list[Message]:
    if isinstance(value, str):
        return user_prompt(value)
    return parse_messages(value, field)


def _convert_pairs(row: dict[str, Any], number: int) -> PreferenceRecord:
    chosen_value = require(row, "chosen")
    rejected_value = require(row, "rejected")

    if row.get("prompt") is not None:
        prompt = validate_prompt(_prompt_messages(row["prompt"], "prompt"))
        chosen = _completion_text(chosen_value, "chosen")
        rejected = _completion_text(rejected_value, "rejected")
    else:
        # Implicit prompt: chosen and rejected are whole conversations.
        if not isinstance(chosen_value, list) or not isinstance(rejected_value, list):
            raise RowDefect(
                Defect.MISSING_FIELD,
                "field 'prompt' is missing; without it chosen and rejected must both be "
                "whole conversations (message lists)",
            )
        prompt, chosen, rejected = shared_prompt(
            parse_messages(chosen_value, "chosen"), parse_messages(rejected_value, "rejected")
        )
    return _preference(prompt, chosen, rejected, number)


def _preference(prompt: list[Message], chosen: str, rejected: str, row: int) -> PreferenceRecord:
    return PreferenceRecord(
        prompt=prompt,
        chosen=validate_completion(chosen, "chosen"),
        rejected=validate_completion(rejected, "rejected"),
        row=row,
    )


# ---- Anthropic HH --------------------------------------------------------------------


def _hh_matches(row: dict[str, Any]) -> bool:
    chosen = row.get("chosen")
    return "prompt" not in row and isinstance(chosen, str) and HH_ASSISTANT in chosen


def _convert_hh(row: dict[str, Any], number: int) -> PreferenceRecord:
    chosen = parse_hh_transcript(require_str(row, "chosen"), "chosen")
    rejected = parse_hh_transcript(require_str(row, "rejected"), "rejected")
    prompt, chosen_text, rejected_text = shared_prompt(chosen, rejected)
    return _preference(prompt, chosen_text, rejected_text, number)


# ---- AlpacaFarm / AlpacaEval ---------------------------------------------------------


def _alpaca_matches(row: dict[str, Any]) -> bool:
    return {"instruction", "output_1", "output_2"} <= row.keys()


def alpaca_prompt_text(row: dict[str, Any]) -> str:
    """Join `instruction` and the optional `input` with a blank line, as Alpaca does."""
    instruction = require_str(row, "instruction")
    extra = row.get("input")
    if extra is None or extra == "":
        return instruction
    if not isinstance(extra, str):
        raise RowDefect(
            Defect.WRONG_TYPE, f"field 'input' must be a string, got {type(extra).__name__}"
        )
    return f"{instruction}\n\n{extra}"


def _alpaca_preference(row: dict[str, Any]) -> int | SkipReason:
    """Return 1 or 2 for the preferred output, or why the row is skipped.

    AlpacaEval stores a float in [1, 2]: below 1.5 prefers output_1, above it output_2,
    and exactly 1.5 is a tie.
    """
    value = row.get("preference")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return SkipReason.MISSING_PREFERENCE
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowDefect(
            Defect.WRONG_TYPE,
            f"field 'preference' must be a number in [1, 2], got {type(value).__name__}",
        )
    if not 1.0 <= value <= 2.0:
        raise RowDefect(
            Defect.INVALID_VALUE, f"field 'preference' must be in [1, 2], got {value!r}"
        )
    if value == 1.5:
        return SkipReason.TIE
    return 1 if value < 1.5 else 2


def _convert_alpaca(row: dict[str, Any], number: int) -> PreferenceRecord | Skipped:
    prompt_text = alpaca_prompt_text(row)
    output_1 = require_str(row, "output_1")
    output_2 = require_str(row, "output_2")

    preferred = _alpaca_preference(row)
    if isinstance(preferred, SkipReason):
        return Skipped(preferred)

    prompt = validate_prompt(user_prompt(prompt_text), "instruction")
    chosen, rejected = (output_1, output_2) if preferred == 1 else (output_2, output_1)
    return _preference(prompt, chosen, rejected, number)


# ---- ShareGPT (LLaMA-Factory) --------------------------------------------------------


def _sharegpt_matches(row: dict[str, Any]) -> bool:
    return {"conversations", "chosen", "rejected"} <= row.keys()


def _convert_sharegpt(row: dict[str, Any], number: int) -> PreferenceRecord:
    conversation = parse_messages(
        require(row, "conversations"), "conversations", role_key="from", content_key="value"
    )
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        conversation = [Message(role="system", content=system), *conversation]

    answers = []
    for field in ("chosen", "rejected"):
        answer = parse_message(require(row, field), field, role_key="from", content_key="value")
        if answer["role"] != "assistant":
            raise RowDefect(
                Defect.INVALID_CONVERSATION,
                f"{field} must come from 'gpt' or 'assistant', got {answer['role']!r}",
            )
        answers.append(answer["content"])

    prompt = validate_prompt(conversation, "conversations")
    return _preference(prompt, answers[0], answers[1], number)


# ---- binary feedback (KTO, Binary Cringe) --------------------------------------------


def _binary_matches(row: dict[str, Any]) -> bool:
    return "label" in row and ("messages" in row or {"prompt", "completion"} <= row.keys())


def _convert_binary(row: dict[str, Any], number: int) -> BinaryRecord:
    label = require(row, "label")
    if not isinstance(label, bool):
        raise RowDefect(
            Defect.WRONG_TYPE,
            f"field 'label' must be true or false, got {type(label).__name__} {label!r}",
        )

    if "messages" in row:
        prompt, completion = split_final_assistant(
            parse_messages(require(row, "messages"), "messages"), "messages"
        )
    else:
        prompt = _prompt_messages(require(row, "prompt"), "prompt")
        completion = _completion_text(require(row, "completion"), "completion")

    return BinaryRecord(
        prompt=validate_prompt(prompt),
        completion=validate_completion(completion, "completion"),
        label=label,
        row=number,
    )


# Detection tries the layouts in this order, so the more specific ones come first.
FORMATS: dict[str, RecordFormat] = {
    fmt.name: fmt
    for fmt in (
        RecordFormat(
            "sharegpt",
            "conversations [{from, value}], chosen {from, value}, rejected {from, value}",
            _sharegpt_matches,
            _convert_sharegpt,
        ),
        RecordFormat(
            "binary",
            "messages [{role, content}] + label, or prompt + completion + label",
            _binary_matches,
            _convert_binary,
        ),
        RecordFormat(
            "alpaca",
            "instruction, input (optional), output_1, output_2, preference",
            _alpaca_matches,
            _convert_alpaca,
        ),
        RecordFormat(
            "hh",
            "chosen, rejected as transcripts '\\n\\nHuman: ...\\n\\nAssistant: ...'",
            _hh_matches,
            _convert_hh,
        ),
        RecordFormat(
            "pairs",
            "prompt, chosen, rejected (strings or message lists), or chosen, rejected as "
            "whole conversations with a shared prompt",
            _pairs_matches,
            _convert_pairs,
        ),
    )
}
