"""The packed token layout: one row per completion token, in the batch's row-major order.

The training forward pass computes logits only at completion positions. With N rows, T
positions and the (N, T) bool `mask`, the M = mask.sum() completion tokens are packed in
the order `tensor[mask]` gives: all tokens of row 0, then row 1, and so on. In the
pairwise layout the chosen rows come first, so the chosen tokens are the packed rows
`[:chosen_tokens]` and the rejected tokens the rest.

Losses also accept padded logits (N, T, V); `packed_tokens` selects their completion
positions, so every loss computes on the packed layout.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from cringe_core.losses.base import LossInputs


class PackedTokens(NamedTuple):
    logits: torch.Tensor  # (M, V) at the completion tokens
    labels: torch.Tensor  # (M,) long
    row_ids: torch.Tensor  # (M,) long, the batch row of each token


def packed_tokens(inputs: LossInputs) -> PackedTokens:
    """Return the completion tokens' logits, labels and rows, packing padded inputs."""
    mask = inputs.mask
    if inputs.logits.ndim == 3:
        logits = inputs.logits[mask]  # (N, T, V) -> (M, V)
        labels = inputs.labels[mask]  # (N, T) -> (M,)
    else:
        logits, labels = inputs.logits, inputs.labels
    return PackedTokens(logits, labels, row_ids(mask))


def row_ids(mask: torch.Tensor) -> torch.Tensor:
    """Return the row of each packed token: (N, T) bool -> (M,) long."""
    counts = mask.sum(dim=-1)  # (N,)
    rows = torch.arange(mask.shape[0], device=mask.device)
    return torch.repeat_interleave(rows, counts)  # (M,)


def row_sums(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum packed per-token values by row: (M,) values and the (N, T) mask -> (N,).

    The values are scattered back to (N, T) and summed along each row, which is
    deterministic on GPUs, unlike an `index_add` over row ids.
    """
    padded = values.new_zeros(mask.shape).masked_scatter(mask, values)  # (N, T)
    return padded.sum(dim=-1)  # (N,)
