"""Pad tokenized rows into the tensors of one forward pass.

Pairwise batches stack both sides along the batch axis: rows `[:B]` are prompt + chosen
and rows `[B:]` prompt + rejected of the same pairs, so one forward pass scores both.
Sequences are right padded. `labels` are the input ids at completion tokens and -100 at
prompt and padding positions, the value that `concatenated_forward` masks out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cringe_core.data.records import TokenizedExample, TokenizedPair

IGNORE_INDEX = -100


def collate_pairs(pairs: list[TokenizedPair], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Build the concatenated batch of B preference pairs.

    Returns `input_ids` (2B, T) long, `attention_mask` (2B, T) long and `labels` (2B, T)
    long, with T the longest prompt + completion over both sides.
    """
    if not pairs:
        raise ValueError("collate_pairs needs at least one pair, got an empty list")

    # Chosen rows first, then rejected: B + B = 2B rows sharing the same prompts.
    prompts = [pair.prompt_ids for pair in pairs] * 2  # 2B prompts
    completions = [pair.chosen_ids for pair in pairs] + [pair.rejected_ids for pair in pairs]
    return _pad_rows(prompts, completions, pad_token_id)


def collate_examples(
    examples: list[TokenizedExample], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Build the batch of B binary-feedback examples.

    Returns `input_ids` (B, T) long, `attention_mask` (B, T) long, `labels` (B, T) long and
    `is_good` (B,) bool, with T the longest prompt + completion.
    """
    if not examples:
        raise ValueError("collate_examples needs at least one example, got an empty list")

    batch = _pad_rows(
        [example.prompt_ids for example in examples],
        [example.completion_ids for example in examples],
        pad_token_id,
    )
    batch["is_good"] = torch.tensor([example.label for example in examples], dtype=torch.bool)
    return batch


def _pad_rows(
    prompts: Sequence[list[int]], completions: Sequence[list[int]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Right pad prompt + completion rows; labels keep only the completion tokens."""
    rows = len(prompts)
    lengths = [
        len(prompt) + len(completion)
        for prompt, completion in zip(prompts, completions, strict=True)
    ]
    max_length = max(lengths)
    input_ids = torch.full((rows, max_length), pad_token_id, dtype=torch.long)  # (N, T)
    attention_mask = torch.zeros((rows, max_length), dtype=torch.long)  # (N, T)
    labels = torch.full((rows, max_length), IGNORE_INDEX, dtype=torch.long)  # (N, T)

    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        length = lengths[row]
        input_ids[row, :length] = torch.tensor(prompt + completion, dtype=torch.long)  # (L,)
        attention_mask[row, :length] = 1
        labels[row, len(prompt) : length] = torch.tensor(completion, dtype=torch.long)

    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
