"""How a policy ranks held-out preference pairs: log-prob margins and accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cringe_core.data.records import TokenizedPair
from cringe_core.losses.forward import compute_sequence_logps
from cringe_core.training.step import collate


@dataclass(frozen=True)
class PolicyPreference:
    margins: torch.Tensor  # (R,) log p(chosen) - log p(rejected), summed over tokens
    accuracy: float  # share of pairs with margin > 0
    mean_margin: float


@torch.no_grad()
def policy_preference(
    model: Any,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    batch_size: int = 8,
    device: torch.device | None = None,
) -> PolicyPreference:
    """Score every pair with the policy in eval mode (no dropout) and summarize."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    margins = []
    for start in range(0, len(pairs), batch_size):
        micro = collate(pairs[start : start + batch_size], pad_token_id, device)
        logps = compute_sequence_logps(model, micro.batch).float().cpu()  # (2b,)
        chosen, rejected = logps.chunk(2)  # (b,), (b,)
        margins.append(chosen - rejected)
    model.train(was_training)

    all_margins = torch.cat(margins)  # (R,)
    return PolicyPreference(
        margins=all_margins,
        accuracy=float((all_margins > 0).float().mean()),
        mean_margin=float(all_margins.mean()),
    )
