"""IPO: Azar et al., "A General Theoretical Paradigm to Understand Learning from Human
Preferences", arXiv:2310.12036, with length-normalized log-ratios.
"""

from __future__ import annotations

import torch

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.dpo import pair_count, preference_log_ratios, preference_metrics
from cringe_core.losses.layout import divide_by_normalizer
from cringe_core.spec import IpoSpec

NAME: str = IpoSpec.model_fields["name"].default


def normalizer(inputs: LossInputs) -> torch.Tensor:
    """Count this micro-batch's pairs (scalar long)."""
    return pair_count(inputs, NAME)


def compute(
    inputs: LossInputs,
    spec: IpoSpec,
    normalizer: torch.Tensor,
    generator: torch.Generator | None,
) -> LossOutput:
    """Compute the IPO loss of a pairwise batch against reference log-probs.

        r(y) = (log pi(y) - log ref(y)) / |y|      |y| = completion tokens of y
        h_i = r(y_w^i) - r(y_l^i)
        loss = sum_i (h_i - 1 / (2 * beta))^2 / normalizer

    The empirical IPO loss of Azar et al. 2023 with their regularization tau = beta.
    Dividing each side's log-ratio by its length is the project's choice for IPO.
    `normalizer` is the global number of pairs over every micro-batch and worker.
    `generator` is unused; it is in the signature that every loss shares.

    Shapes (B pairs, T positions, V vocabulary, M completion tokens):
        inputs.logits (2B, T, V) or packed (M, V), rows [:B] chosen and [B:] rejected;
        inputs.labels (2B, T) or packed (M,); inputs.mask (2B, T);
        inputs.reference_logps (2B,);
        returns a scalar loss.

    Metrics are detached means over the local pairs; the reward of a side is
    beta * r(y), from the length-normalized log-ratio that the loss uses.
    """
    ratios = preference_log_ratios(inputs, NAME, length_normalized=True)
    h = ratios.chosen_log_ratios - ratios.rejected_log_ratios  # (B,)
    losses = (h - 1.0 / (2.0 * spec.beta)) ** 2  # (B,)
    loss = divide_by_normalizer(losses.sum(), normalizer)
    return LossOutput(loss=loss, metrics=preference_metrics(ratios, spec.beta, losses))
