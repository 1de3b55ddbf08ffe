"""The Bradley-Terry loss of a reward model on preference pairs.

    L = -log sigmoid(r(x, y_w) - r(x, y_l))

Bradley and Terry, "Rank analysis of incomplete block designs" (Biometrika, 1952), as
used for reward models by Ouyang et al. 2022 (arXiv:2203.02155, equation 1). Shapes:
`chosen` and `rejected` rewards are (B,) for B pairs of a micro-batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, normalizer: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum the loss over the pairs of a micro-batch and divide by `normalizer`.

    `normalizer` is the number of pairs in the whole optimizer step, so the gradients of
    accumulated micro-batches add up to those of one big batch. Metrics are means over
    this micro-batch: `accuracy` (share with r_w > r_l), `margin/mean`,
    `rewards/chosen`, `rewards/rejected`.
    """
    margins = (chosen - rejected).float()  # (B,)
    loss = -F.logsigmoid(margins).sum() / normalizer
    detached = margins.detach()
    metrics = {
        "accuracy": float((detached > 0).float().mean()),
        "margin/mean": float(detached.mean()),
        "rewards/chosen": float(chosen.detach().float().mean()),
        "rewards/rejected": float(rejected.detach().float().mean()),
    }
    return loss, metrics
