"""Binary Cringe Loss: Adolphs et al., "The CRINGE Loss: Learning what language not to
model", ACL 2023, arXiv:2211.05826.
"""

from __future__ import annotations

import torch

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.cringe_token import logps_and_cringe
from cringe_core.losses.layout import check_shapes, divide_by_normalizer, good_rows
from cringe_core.losses.packing import packed_tokens
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

    Shapes (N rows, T positions, V vocabulary, M completion tokens):
        inputs.logits (N, T, V) or packed (M, V); inputs.labels (N, T) or packed (M,);
        inputs.mask (N, T);
        inputs.is_good (N,) for binary-feedback rows (num_pairs None), or a pairwise batch
        (N = 2B, rows [:B] chosen = good, rows [B:] rejected = bad); returns a scalar loss.

    The generator draws one uniform per bad completion token, in packed order. Metrics
    are detached and divided by the local token count: `loss = ce_loss + cringe_loss`
    (alpha included).
    """
    is_good = good_rows(inputs, NAME)  # (N,)
    check_shapes(inputs)

    # Token log-probs of every completion token, and the cringe term of the bad ones.
    tokens = packed_tokens(inputs)
    good = is_good[tokens.row_ids]  # (M,)
    per_token, cringe = logps_and_cringe(
        tokens.logits, tokens.labels, ~good, spec.top_k, generator, spec.detach_positive
    )  # (M,), (M,)
    ce_sum = -(per_token * good).sum()
    cringe_sum = spec.alpha * cringe.sum()
    loss = divide_by_normalizer(ce_sum + cringe_sum, normalizer)

    local_tokens = inputs.mask.sum().clamp(min=1)
    metrics = {
        "loss": (ce_sum + cringe_sum) / local_tokens,
        "ce_loss": ce_sum / local_tokens,
        "cringe_loss": cringe_sum / local_tokens,
    }
    return LossOutput(loss=loss, metrics={k: v.detach() for k, v in metrics.items()})
