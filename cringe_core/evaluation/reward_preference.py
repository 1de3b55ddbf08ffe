"""Reward-model accuracy on held-out preference pairs, with the reward margins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cringe_core.data.records import PreferenceRecord
from cringe_core.reward.scoring import RewardScorer


@dataclass(frozen=True)
class RewardPreference:
    margins: torch.Tensor  # (R,) r(x, chosen) - r(x, rejected)
    accuracy: float  # share of pairs with margin > 0
    mean_margin: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "pairs": len(self.margins),
            "accuracy": self.accuracy,
            "mean_margin": self.mean_margin,
        }


def reward_preference(scorer: RewardScorer, pairs: Sequence[PreferenceRecord]) -> RewardPreference:
    """Score both sides of every pair and summarize; raises ValueError on no pairs."""
    if not pairs:
        raise ValueError("reward_preference needs at least one pair, got none")
    prompts = [pair.prompt for pair in pairs]
    chosen = scorer.score(prompts, [pair.chosen for pair in pairs])  # (R,)
    rejected = scorer.score(prompts, [pair.rejected for pair in pairs])  # (R,)
    margins = chosen - rejected  # (R,)
    return RewardPreference(
        margins=margins,
        accuracy=float((margins > 0).float().mean()),
        mean_margin=float(margins.mean()),
    )
