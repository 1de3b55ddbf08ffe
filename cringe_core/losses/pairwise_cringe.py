"""Pairwise Cringe Loss: Xu, Lee, Sukhbaatar, Weston, "Some things are more CRINGE than
others: Iterative Preference Optimization with the Pairwise Cringe Loss", arXiv:2312.16682.
"""

from __future__ import annotations

import torch

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.cringe_token import logps_and_cringe
from cringe_core.losses.layout import check_shapes, divide_by_normalizer, require_pairs
from cringe_core.losses.logps import completion_lengths
from cringe_core.losses.packing import packed_tokens, row_sums
from cringe_core.spec import PairwiseCringeSpec

NAME: str = PairwiseCringeSpec.model_fields["name"].default


def normalizer(inputs: LossInputs) -> torch.Tensor:
    """Count this micro-batch's chosen and rejected completion tokens (scalar long)."""
    require_pairs(inputs, NAME)
    return inputs.mask.sum()


def compute(
    inputs: LossInputs,
    spec: PairwiseCringeSpec,
    normalizer: torch.Tensor,
    generator: torch.Generator | None,
) -> LossOutput:
    """Compute the Pairwise Cringe Loss of a pairwise batch.

        M_i = log p(y_w^i | x^i) - log p(y_l^i | x^i)      (margin = "sum")
        g_i = sigmoid((b - M_i) / tau)
        loss = (sum_i sum_{t in y_w^i} CE_t + alpha * sum_i g_i * sum_{t in y_l^i} CR_t)
               / normalizer

    CE_t = -log softmax(z_t)[y_t]; CR_t is the sampled cringe term of `cringe_token_loss`
    (top_k candidates, gradient into both logits). With margin = "mean" each side's
    log-prob is divided by its completion length before the difference. The gradient
    flows through g unless `spec.detach_gate`. `normalizer` is the global count of
    chosen + rejected completion tokens over every micro-batch and worker, so the losses
    of the parts of a batch add up to the loss of the whole batch.

    Shapes (B pairs, T positions, V vocabulary, M completion tokens):
        inputs.logits (2B, T, V) or packed (M, V), rows [:B] chosen and [B:] rejected;
        inputs.labels (2B, T) or packed (M,); inputs.mask (2B, T); returns a scalar loss.
    The generator draws one uniform per rejected completion token, in packed order.

    Metrics are detached means over this micro-batch. `loss`, `ce_loss` and `cringe_loss`
    (alpha included) are divided by the local token count, so `loss = ce_loss +
    cringe_loss`. The other metrics are means over the local pairs.
    """
    num_pairs = require_pairs(inputs, NAME)
    check_shapes(inputs)
    mask = inputs.mask

    # Token log-probs of both sides and the cringe term of the rejected tokens come from
    # one pass over the packed logits. The sequence log-probs and margins follow from them.
    tokens = packed_tokens(inputs)
    rejected = tokens.row_ids >= num_pairs  # (M,)
    per_token, cringe = logps_and_cringe(
        tokens.logits, tokens.labels, rejected, spec.top_k, generator
    )  # (M,), (M,)
    logps = row_sums(per_token, mask)  # (2B,)
    chosen_logps, rejected_logps = logps[:num_pairs], logps[num_pairs:]  # (B,), (B,)
    if spec.margin == "mean":
        lengths = completion_lengths(mask)  # (2B,)
        margin = chosen_logps / lengths[:num_pairs] - rejected_logps / lengths[num_pairs:]
    else:
        margin = chosen_logps - rejected_logps  # (B,)

    gate = torch.sigmoid((spec.margin_bias - margin) / spec.temperature)  # (B,)
    if spec.detach_gate:
        gate = gate.detach()

    # Cross-entropy on the chosen side, gated cringe term on the rejected side.
    ce_sum = -chosen_logps.sum()
    cringe_per_row = row_sums(cringe, mask)  # (2B,), zero for [:B]
    cringe_sum = spec.alpha * (gate * cringe_per_row[num_pairs:]).sum()

    loss = divide_by_normalizer(ce_sum + cringe_sum, normalizer)

    local_tokens = mask.sum().clamp(min=1)
    metrics = {
        "loss": (ce_sum + cringe_sum) / local_tokens,
        "ce_loss": ce_sum / local_tokens,
        "cringe_loss": cringe_sum / local_tokens,
        "gate/mean": gate.mean(),
        "gate/active_fraction": (gate > 0.5).to(gate.dtype).mean(),
        "margin/mean": margin.mean(),
        "logps/chosen": chosen_logps.mean(),
        "logps/rejected": rejected_logps.mean(),
        "accuracy": (margin > 0).to(margin.dtype).mean(),
    }
    return LossOutput(loss=loss, metrics={k: v.detach() for k, v in metrics.items()})
