"""One forward pass over a collated batch, packed into the inputs every loss takes."""

from __future__ import annotations

from typing import Any

import torch

from cringe_core.losses.base import LossInputs
from cringe_core.losses.logps import per_token_logps
from cringe_core.losses.packing import row_sums
from cringe_core.models.completion_head import as_completion_logits

IGNORE_INDEX = -100


def concatenated_forward(
    model: Any, batch: dict[str, torch.Tensor], num_pairs: int | None
) -> LossInputs:
    """Run the model once over all rows of the batch; return packed completion logits.

    `batch` comes from `collate_pairs` (rows [:B] chosen, [B:] rejected; pass
    `num_pairs = B`) or `collate_examples` (pass `num_pairs = None`; `is_good` is passed
    through). The logits at position t score the token at t + 1, so the mask is the
    labels shifted left by one. Labels of -100 (prompt and padding) are mask False. A
    token at position 0 has no logits before it and is never scored, which matters only
    for a row with an empty prompt.

    `model` is a causal LM, or CompletionLogits (possibly inside DistributedDataParallel);
    a plain model is wrapped, so its LM head runs only at completion positions where its
    family allows (see `cringe_core.models.completion_head`).

    Shapes (N rows, T padded length, V vocabulary, M completion tokens): the batch
    tensors are (N, T). The returned mask is (N, T-1); logits (M, V) in the model's
    output dtype and labels (M,) are packed in the mask's row-major order.
    """
    shifted_labels = batch["labels"][:, 1:]  # (N, T-1)
    mask = shifted_labels != IGNORE_INDEX  # (N, T-1)
    logits = as_completion_logits(model)(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], positions=mask
    )  # (M, V)
    return LossInputs(
        logits=logits,
        labels=shifted_labels[mask],  # (M,)
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
    per_token = per_token_logps(inputs.logits, inputs.labels)  # (M,)
    return row_sums(per_token, inputs.mask)  # (N,)
