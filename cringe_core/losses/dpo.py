"""Direct Preference Optimization: Rafailov et al., "Direct Preference Optimization: Your
Language Model is Secretly a Reward Model", arXiv:2305.18290.

The log-ratio computation here is shared with IPO.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.layout import check_shapes, divide_by_normalizer, require_pairs
from cringe_core.losses.logps import completion_lengths, per_token_logps
from cringe_core.losses.packing import packed_tokens, row_sums
from cringe_core.spec import DpoSpec

NAME: str = DpoSpec.model_fields["name"].default


class PreferenceLogRatios(NamedTuple):
    """Policy log-probs and policy/reference log-ratios of both sides of B pairs."""

    chosen_logps: torch.Tensor  # (B,) summed policy log-probs
    rejected_logps: torch.Tensor  # (B,)
    chosen_log_ratios: torch.Tensor  # (B,) log pi(y_w) - log ref(y_w), maybe per token
    rejected_log_ratios: torch.Tensor  # (B,)


def preference_log_ratios(
    inputs: LossInputs, loss_name: str, length_normalized: bool
) -> PreferenceLogRatios:
    """Compute log pi(y) - log ref(y) for both sides of a pairwise batch.

    `inputs.reference_logps` (2B,) holds the summed reference log-probs, in the same row
    layout as the logits. With `length_normalized`, each side's log-ratio is divided by
    that side's completion length (IPO). Raises ValueError when the reference is missing.
    """
    num_pairs = require_pairs(inputs, loss_name)
    check_shapes(inputs)
    rows = 2 * num_pairs
    if inputs.reference_logps is None:
        raise ValueError(
            f"loss {loss_name!r} needs inputs.reference_logps, the (N,) summed reference "
            "log-probs, but it is None; compute them with compute_sequence_logps on the "
            "frozen reference model, once before training or in each step"
        )
    if tuple(inputs.reference_logps.shape) != (rows,):
        raise ValueError(
            f"reference_logps must be (N,) = ({rows},), one per row of the batch, "
            f"got {tuple(inputs.reference_logps.shape)}"
        )

    tokens = packed_tokens(inputs)
    per_token = per_token_logps(tokens.logits, tokens.labels)  # (M,)
    logps = row_sums(per_token, inputs.mask)  # (2B,)
    reference_logps = inputs.reference_logps.detach().to(logps.device, logps.dtype)  # (2B,)
    log_ratios = logps - reference_logps  # (2B,)
    if length_normalized:
        log_ratios = log_ratios / completion_lengths(inputs.mask)

    return PreferenceLogRatios(
        chosen_logps=logps[:num_pairs],
        rejected_logps=logps[num_pairs:],
        chosen_log_ratios=log_ratios[:num_pairs],
        rejected_log_ratios=log_ratios[num_pairs:],
    )


def pair_count(inputs: LossInputs, loss_name: str) -> torch.Tensor:
    """Count this micro-batch's pairs, as a scalar long tensor on the mask's device."""
    num_pairs = require_pairs(inputs, loss_name)
    return torch.tensor(num_pairs, dtype=torch.long, device=inputs.mask.device)


def preference_metrics(
    ratios: PreferenceLogRatios, beta: float, losses: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Detached means over the local pairs, under the names DPO trainers commonly log."""
    chosen_rewards = beta * ratios.chosen_log_ratios  # (B,)
    rejected_rewards = beta * ratios.rejected_log_ratios  # (B,)
    metrics = {
        "loss": losses.mean(),
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).to(chosen_rewards.dtype).mean(),
        "logps/chosen": ratios.chosen_logps.mean(),
        "logps/rejected": ratios.rejected_logps.mean(),
    }
    return {k: v.detach() for k, v in metrics.items()}


def normalizer(inputs: LossInputs) -> torch.Tensor:
    """Count this micro-batch's pairs (scalar long)."""
    return pair_count(inputs, NAME)


def compute(
    inputs: LossInputs,
    spec: DpoSpec,
    normalizer: torch.Tensor,
    generator: torch.Generator | None,
) -> LossOutput:
    """Compute the DPO loss of a pairwise batch against reference log-probs.

        h_i = (log pi(y_w^i) - log ref(y_w^i)) - (log pi(y_l^i) - log ref(y_l^i))
        loss = sum_i -log sigmoid(beta * h_i) / normalizer

    The DPO objective of Rafailov et al. 2023, with log-probs summed over completion
    tokens.
    `normalizer` is the global number of pairs over every micro-batch and worker.
    `generator` is unused; it is in the signature that every loss shares.

    Shapes (B pairs, T positions, V vocabulary, M completion tokens):
        inputs.logits (2B, T, V) or packed (M, V), rows [:B] chosen and [B:] rejected;
        inputs.labels (2B, T) or packed (M,); inputs.mask (2B, T);
        inputs.reference_logps (2B,);
        returns a scalar loss.

    Metrics are detached means over the local pairs; the implicit reward of a side is
    beta * (log pi(y) - log ref(y)).
    """
    ratios = preference_log_ratios(inputs, NAME, length_normalized=False)
    h = ratios.chosen_log_ratios - ratios.rejected_log_ratios  # (B,)
    losses = -F.logsigmoid(spec.beta * h)  # (B,)
    loss = divide_by_normalizer(losses.sum(), normalizer)
    return LossOutput(loss=loss, metrics=preference_metrics(ratios, spec.beta, losses))
