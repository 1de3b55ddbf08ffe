"""Supervised fine-tuning: token cross-entropy on the chosen (or good) completions."""

from __future__ import annotations

import torch

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.layout import check_shapes, divide_by_normalizer, good_rows
from cringe_core.losses.logps import per_token_logps
from cringe_core.losses.packing import packed_tokens
from cringe_core.spec import SftSpec

NAME: str = SftSpec.model_fields["name"].default


def normalizer(inputs: LossInputs) -> torch.Tensor:
    """Count this micro-batch's chosen (pairs) or good (binary rows) tokens (scalar long)."""
    return _target_mask(inputs).sum()


def compute(
    inputs: LossInputs,
    spec: SftSpec,
    normalizer: torch.Tensor,
    generator: torch.Generator | None,
) -> LossOutput:
    """Compute the token cross-entropy of the chosen or good completions.

        loss = sum_{t in chosen or good rows} -log softmax(z_t)[y_t] / normalizer

    Standard maximum-likelihood fine-tuning; rejected and bad rows are ignored.
    `normalizer` is the global count of chosen (or good) completion tokens over every
    micro-batch and worker. `spec` has no fields and `generator` is unused; both are in
    the signature that every loss shares.

    Shapes (N rows, T positions, V vocabulary, M completion tokens):
        inputs.logits (N, T, V) or packed (M, V); inputs.labels (N, T) or packed (M,);
        inputs.mask (N, T); either a pairwise batch (N = 2B, rows [:B] chosen) or
        binary-feedback rows with inputs.is_good (N,); returns a scalar loss.

    Metrics: `loss`, this micro-batch's sum divided by its own token count (detached).
    """
    is_good = good_rows(inputs, NAME)  # (N,); chosen rows in the pairwise layout
    check_shapes(inputs)

    # Only the chosen or good tokens count, so only their softmax is computed.
    tokens = packed_tokens(inputs)
    targets = is_good[tokens.row_ids].nonzero().squeeze(-1)  # (M_good,) packed indices
    target_logits = tokens.logits.index_select(0, targets)  # (M_good, V)
    ce_sum = -per_token_logps(target_logits, tokens.labels[targets]).sum()
    loss = divide_by_normalizer(ce_sum, normalizer)
    local_tokens = targets.numel() or 1
    return LossOutput(loss=loss, metrics={"loss": (ce_sum / local_tokens).detach()})


def _target_mask(inputs: LossInputs) -> torch.Tensor:
    is_good = good_rows(inputs, NAME)  # (N,); chosen rows in the pairwise layout
    return inputs.mask & is_good.unsqueeze(-1)  # (N, T)
