"""Binary Cringe Loss: Adolphs et al., "The CRINGE Loss: Learning what language not to
model", ACL 2023, arXiv:2211.05826.
"""

from __future__ import annotations

import torch

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.cringe_token import cringe_token_loss
from cringe_core.losses.layout import check_shapes, divide_by_normalizer, good_rows
from cringe_core.losses.logps import per_token_logps
from cringe_core.spec import BinaryCringeSpec

NAME: str = BinaryCringeSpec.model_fields["name"].default


def normalizer(inputs: LossInputs) -> torch.Tensor:
    """Count this micro-batch's completion tokens, good and bad (scalar long)."""
    good_rows(inputs, NAME)  # validates the layout
    return inputs.mask.sum()


def compute(
    inputs: LossInputs,
    spec: BinaryCringeSpec,
    normalizer: torch.Tensor,
    generator: torch.Generator | None,
) -> LossOutput:
    """Compute the Binary Cringe Loss of binary-feedback rows or of a pairwise batch.

        loss = (sum_{good t} CE_t + alpha * sum_{bad t} CR_t) / normalizer

    CE_t = -log softmax(z_t)[y_t]. CR_t = softplus(z_t[y_t] - z_t[j]), with j sampled from
    the softmax over the top_k logits that remain after dropping y_t (or the (k+1)-th
    logit when y_t is not in the top k+1), so j is never the bad token. The sampled logit
    gets no gradient when `spec.detach_positive`. `normalizer` is the global count of good
    + bad completion tokens over every micro-batch and worker.

    Shapes (N rows, T positions, V vocabulary):
        inputs.logits (N, T, V); inputs.labels (N, T); inputs.mask (N, T);
        inputs.is_good (N,) for binary-feedback rows (num_pairs None), or a pairwise batch
        (N = 2B, rows [:B] chosen = good, rows [B:] rejected = bad); returns a scalar loss.

    Every row is scored by both terms and masked afterwards, so the generator draws one
    uniform per position of all N rows. Metrics are detached and divided by the local
    token count: `loss = ce_loss + cringe_loss` (alpha included).
    """
    is_good = good_rows(inputs, NAME)  # (N,)
    check_shapes(inputs)
    good_mask = inputs.mask & is_good.unsqueeze(-1)  # (N, T)
    bad_mask = inputs.mask & ~is_good.unsqueeze(-1)  # (N, T)

    per_token = per_token_logps(inputs.logits, inputs.labels)  # (N, T)
    ce_sum = -(per_token * good_mask).sum()

    cringe = cringe_token_loss(
        inputs.logits, inputs.labels, spec.top_k, generator, spec.detach_positive
    )  # (N, T)
    cringe_sum = spec.alpha * (cringe * bad_mask).sum()

    loss = divide_by_normalizer(ce_sum + cringe_sum, normalizer)

    local_tokens = inputs.mask.sum().clamp(min=1)
    metrics = {
        "loss": (ce_sum + cringe_sum) / local_tokens,
        "ce_loss": ce_sum / local_tokens,
        "cringe_loss": cringe_sum / local_tokens,
    }
    return LossOutput(loss=loss, metrics={k: v.detach() for k, v in metrics.items()})
