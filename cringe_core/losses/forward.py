"""One forward pass over a collated batch, shifted into the inputs every loss takes."""

from __future__ import annotations

from typing import Any

import torch

from cringe_core.losses.base import LossInputs
from cringe_core.losses.logps import per_token_logps, sequence_logps

IGNORE_INDEX = -100


def concatenated_forward(
    model: Any, batch: dict[str, torch.Tensor], num_pairs: int | None
) -> LossInputs:
    """Run the model once over all rows of the batch and shift logits against labels.

    `batch` comes from `collate_pairs` (rows [:B] chosen, [B:] rejected; pass
    `num_pairs = B`) or `collate_examples` (pass `num_pairs = None`; `is_good` is passed
    through). The logits at position t score the token at t + 1, so the last position
    is dropped from the logits and the first from the labels. Labels of -100 (prompt and
    padding) become mask False and are replaced by id 0, so gathering at them is valid.
    A token at position 0 has no logits before it and is never scored, which matters only
    for a row with an empty prompt.

    Shapes (N rows, T padded length, V vocabulary): the batch tensors are (N, T). The
    returned logits are (N, T-1, V) in the model's output dtype, labels and mask (N, T-1).
    """
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    )
    logits = outputs.logits[:, :-1, :]  # (N, T-1, V)
    shifted_labels = batch["labels"][:, 1:]  # (N, T-1)
    mask = shifted_labels != IGNORE_INDEX  # (N, T-1)
    labels = shifted_labels.masked_fill(~mask, 0)  # (N, T-1)
    return LossInputs(
        logits=logits,
        labels=labels,
        mask=mask,
        num_pairs=num_pairs,
        is_good=batch.get("is_good"),
    )


@torch.no_grad()
def compute_sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum the log-probs of each row's completion tokens without building a graph: (N,).

    Used for reference log-probs. The model runs in whatever mode it is in; call
    `model.eval()` first so that dropout does not change the values.
    """
    inputs = concatenated_forward(model, batch, num_pairs=None)
    per_token = per_token_logps(inputs.logits, inputs.labels)  # (N, T-1)
    return sequence_logps(per_token, inputs.mask)  # (N,)
