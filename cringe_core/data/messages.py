"""Parsing of chat messages and transcripts into `Message` lists, with row-level defects.

Every parser raises `RowDefect` naming the defect and the field, which the reader turns
into a row problem with the row number.
"""

from __future__ import annotations

import re
from typing import Any, cast

from cringe_core.data.defects import Defect
from cringe_core.data.records import Message, Role

# Role names of the common layouts: OpenAI / TRL (user, assistant), ShareGPT (human, gpt).
ROLE_ALIASES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


class RowDefect(Exception):
    """A defect in one row; the reader records it with the row number."""

    def __init__(self, defect: Defect, detail: str) -> None:
        super().__init__(detail)
        self.defect = defect
        self.detail = detail


def require(row: dict[str, Any], field: str) -> Any:
    """Return `row[field]`, raising a missing_field defect when it is absent or null."""
    value = row.get(field)
    if value is None:
        raise RowDefect(Defect.MISSING_FIELD, f"field {field!r} is missing")
    return value


def require_str(row: dict[str, Any], field: str) -> str:
    value = require(row, field)
    if not isinstance(value, str):
        raise RowDefect(
            Defect.WRONG_TYPE, f"field {field!r} must be a string, got {type(value).__name__}"
        )
    return value


def parse_messages(
    value: Any, field: str, role_key: str = "role", content_key: str = "content"
) -> list[Message]:
    """Parse a list of `{role, content}` mappings (or another pair of keys) into messages."""
    if not isinstance(value, list):
        raise RowDefect(
            Defect.WRONG_TYPE,
            f"field {field!r} must be a list of messages, got {type(value).__name__}",
        )
    return [
        parse_message(item, f"{field}[{index}]", role_key, content_key)
        for index, item in enumerate(value)
    ]


def parse_message(
    value: Any, field: str, role_key: str = "role", content_key: str = "content"
) -> Message:
    if not isinstance(value, dict):
        raise RowDefect(
            Defect.WRONG_TYPE,
            f"{field} must be an object with {role_key!r} and {content_key!r}, "
            f"got {type(value).__name__}",
        )
    role = require_str(value, role_key)
    content = require_str(value, content_key)
    normalized = ROLE_ALIASES.get(role.lower())
    if normalized is None:
        raise RowDefect(
            Defect.INVALID_CONVERSATION,
            f"{field} has unknown role {role!r}; accepted roles are {sorted(ROLE_ALIASES)}",
        )
    return Message(role=normalized, content=content)


def user_prompt(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def validate_prompt(prompt: list[Message], field: str = "prompt") -> list[Message]:
    """Check that a prompt is non-empty and ends with a non-empty user turn."""
    if not prompt or not any(message["content"].strip() for message in prompt):
        raise RowDefect(Defect.EMPTY_PROMPT, f"{field} is empty")
    if prompt[-1]["role"] != "user":
        raise RowDefect(
            Defect.INVALID_CONVERSATION,
            f"{field} must end with a user turn, but its last turn is {prompt[-1]['role']!r}",
        )
    if not prompt[-1]["content"].strip():
        raise RowDefect(Defect.EMPTY_PROMPT, f"the last user turn of {field} is empty")
    return prompt


def validate_completion(text: str, field: str) -> str:
    if not text.strip():
        raise RowDefect(Defect.EMPTY_COMPLETION, f"{field} is empty")
    return text


def split_final_assistant(conversation: list[Message], field: str) -> tuple[list[Message], str]:
    """Split a whole conversation into its prompt and the final assistant message."""
    if not conversation or conversation[-1]["role"] != "assistant":
        last = conversation[-1]["role"] if conversation else "nothing"
        raise RowDefect(
            Defect.INVALID_CONVERSATION,
            f"{field} must end with an assistant message, but it ends with {last!r}",
        )
    return conversation[:-1], conversation[-1]["content"]


def shared_prompt(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], str, str]:
    """Return the prompt both conversations share and their final assistant messages.

    The prompt is everything before the final assistant message; chosen and rejected must
    agree on it, else the pair compares different conversations (a prompt_mismatch).
    """
    chosen_prompt, chosen_text = split_final_assistant(chosen, "chosen")
    rejected_prompt, rejected_text = split_final_assistant(rejected, "rejected")
    if chosen_prompt != rejected_prompt:
        turn = _first_difference(chosen_prompt, rejected_prompt)
        raise RowDefect(
            Defect.PROMPT_MISMATCH,
            f"chosen and rejected differ at turn {turn + 1}, before their final assistant message",
        )
    return validate_prompt(chosen_prompt), chosen_text, rejected_text


def _first_difference(left: list[Message], right: list[Message]) -> int:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return min(len(left), len(right))


def parse_hh_transcript(text: str, field: str) -> list[Message]:
    """Parse an Anthropic HH transcript `\\n\\nHuman: ...\\n\\nAssistant: ...` into messages.

    Turn text is stripped of surrounding whitespace. Text before the first turn marker
    is a defect, since it belongs to no speaker.
    """
    parts = _HH_TURN.split(text)
    # split() alternates: [text before the first marker, speaker, text, speaker, text, ...]
    preamble, pieces = parts[0], parts[1:]
    if preamble.strip():
        raise RowDefect(
            Defect.INVALID_CONVERSATION,
            f"{field} has text before its first '\\n\\nHuman:' turn: {preamble[:40]!r}",
        )
    if not pieces:
        raise RowDefect(
            Defect.INVALID_CONVERSATION,
            f"{field} contains no '\\n\\nHuman:' or '\\n\\nAssistant:' turn",
        )

    messages: list[Message] = []
    for speaker, content in zip(pieces[0::2], pieces[1::2], strict=True):
        role = cast(Role, "user" if speaker == "Human" else "assistant")
        messages.append(Message(role=role, content=content.strip()))
    return messages
