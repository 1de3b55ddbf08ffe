"""Turn (prompt, completion) pairs into reward-model inputs, and pad them into batches.

Two encodings, chosen by the reward tokenizer:
- without a chat template (encoders such as BERT): the prompt text and the completion are
  a sentence pair, `[CLS] prompt [SEP] completion [SEP]` with segment ids; when the pair is
  too long, the longer of the two is cut first, one token at a time;
- with a chat template (causal models): the conversation exactly as in policy training,
  the completion as the assistant turn. When it is too long the completion is cut from
  the right, and a prompt longer than half of `max_length` keeps only its last half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cringe_core.data.records import Message
from cringe_core.data.tokenize import encode_completions


@dataclass(frozen=True)
class RewardInput:
    input_ids: list[int]
    token_type_ids: list[int] | None  # segment ids of a sentence pair; None for chat models


def prompt_text(prompt: Sequence[Message]) -> str:
    """Flatten chat messages into the first segment of a sentence pair.

    A single user turn is its content; a longer conversation names each turn's role.
    """
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n\n".join(f"{message['role']}: {message['content']}" for message in prompt)


def encode_reward_inputs(
    tokenizer: Any,
    prompts: Sequence[Sequence[Message]],
    completions: Sequence[str],
    max_length: int,
) -> list[RewardInput]:
    """Encode each (prompt, completion) into at most `max_length` tokens."""
    if len(prompts) != len(completions):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(completions)} completions; pass one "
            "completion per prompt"
        )
    if not prompts:
        return []
    if getattr(tokenizer, "chat_template", None):
        return [
            _encode_chat(tokenizer, list(prompt), completion, max_length)
            for prompt, completion in zip(prompts, completions, strict=True)
        ]

    encoded = tokenizer(
        [prompt_text(prompt) for prompt in prompts],
        list(completions),
        truncation="longest_first",
        max_length=max_length,
    )
    segments = encoded.get("token_type_ids")
    return [
        RewardInput(input_ids=list(ids), token_type_ids=list(segments[i]) if segments else None)
        for i, ids in enumerate(encoded["input_ids"])
    ]


def _encode_chat(
    tokenizer: Any, prompt: list[Message], completion: str, max_length: int
) -> RewardInput:
    # Encode untruncated, then fit: cutting inside encode_completions would keep a prompt
    # that alone fills max_length and leave nothing of the completion to judge.
    encoding = encode_completions(prompt, [completion], tokenizer, max_length=2**31)
    prompt_ids = encoding.prompt_ids
    completion_ids = encoding.completions[0].completion_ids

    prompt_room = max(max_length - len(completion_ids), max_length // 2)
    if len(prompt_ids) > prompt_room:
        prompt_ids = prompt_ids[-prompt_room:]
    completion_ids = completion_ids[: max_length - len(prompt_ids)]
    return RewardInput(input_ids=prompt_ids + completion_ids, token_type_ids=None)


def collate_reward_inputs(
    inputs: Sequence[RewardInput], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Right pad inputs into `input_ids`, `attention_mask` and, for pairs, `token_type_ids`.

    All tensors are (N, T) long, with T the longest input.
    """
    if not inputs:
        raise ValueError("collate_reward_inputs needs at least one input, got an empty list")
    rows = len(inputs)
    width = max(len(item.input_ids) for item in inputs)
    input_ids = torch.full((rows, width), pad_token_id, dtype=torch.long)  # (N, T)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)  # (N, T)
    has_segments = inputs[0].token_type_ids is not None
    token_type_ids = torch.zeros((rows, width), dtype=torch.long)  # (N, T)

    for row, item in enumerate(inputs):
        length = len(item.input_ids)
        input_ids[row, :length] = torch.tensor(item.input_ids, dtype=torch.long)
        attention_mask[row, :length] = 1
        if has_segments and item.token_type_ids is not None:
            token_type_ids[row, :length] = torch.tensor(item.token_type_ids, dtype=torch.long)

    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if has_segments:
        batch["token_type_ids"] = token_type_ids
    return batch
