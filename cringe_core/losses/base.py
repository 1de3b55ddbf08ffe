"""What every loss receives and returns, and the chosen/rejected batch layout.

Pairwise batches stack both sides along the batch axis: rows `[:B]` are the chosen
completions and rows `[B:]` the rejected ones of the same pairs, so one forward pass
scores both. Logits are already shifted: `logits[:, t]` scores `labels[:, t]`.

Logits and labels are padded, (N, T, V) and (N, T), or packed, (M, V) and (M,) at the
M completion tokens only (see `cringe_core.losses.packing`). The training forward pass
gives them packed. `mask` is (N, T) in both layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossInputs:
    logits: torch.Tensor  # (N, T, V) or packed (M, V) float, N = 2B for pairs
    labels: torch.Tensor  # (N, T) or packed (M,) long; any valid id where mask is False
    mask: torch.Tensor  # (N, T) bool, True at completion tokens
    num_pairs: int | None  # B for pairwise layout; None for binary-feedback rows
    is_good: torch.Tensor | None = None  # (N,) bool, binary-feedback rows only
    reference_logps: torch.Tensor | None = None  # (N,) summed reference log-probs (dpo, ipo)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, already divided by the global normalizer
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars
