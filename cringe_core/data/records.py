"""Canonical records every reader produces, and their tokenized forms.

A prompt is a list of chat messages ending with a user turn; a completion is the text of
the assistant turn that answers it. Tokenization goes through the model's chat template,
so `completion_ids` include the template's end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    role: Role
    content: str


@dataclass(frozen=True)
class PreferenceRecord:
    prompt: list[Message]
    chosen: str
    rejected: str
    row: int  # 1-based row number in the source file, for error reports


@dataclass(frozen=True)
class BinaryRecord:
    prompt: list[Message]
    completion: str
    label: bool  # True for a good completion
    row: int


Record = PreferenceRecord | BinaryRecord


@dataclass(frozen=True)
class PromptRecord:
    """A prompt for generation or evaluation, with an optional reference answer."""

    prompt: list[Message]
    reference: str | None
    row: int


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]  # completion tokens only, after truncation
    rejected_ids: list[int]
    row: int


@dataclass(frozen=True)
class TokenizedExample:
    prompt_ids: list[int]
    completion_ids: list[int]
    label: bool
    row: int
