"""Batch layout checks and the global-count division that every loss shares.

Pairwise layout: rows `[:B]` chosen, rows `[B:]` rejected, `num_pairs == B`, `is_good`
None. Binary-feedback layout: `is_good` (N,) bool, `num_pairs` None.

The layout checks read only `mask`, `num_pairs` and `is_good`, because the trainer calls
the normalizers before the forward pass, with an empty placeholder for the logits.
"""

from __future__ import annotations

import torch

from cringe_core.losses.base import LossInputs


def check_shapes(inputs: LossInputs) -> None:
    """Raise ValueError unless logits and labels agree with the (N, T) mask.

    Padded: logits (N, T, V) and labels (N, T). Packed: logits (M, V) and labels (M,)
    with M = mask.sum(), the completion tokens in row-major order.
    """
    _check_mask(inputs)
    logits, labels, mask = inputs.logits, inputs.labels, inputs.mask
    if logits.ndim == 3:
        expected = tuple(logits.shape[:2])
        for name, tensor in (("labels", labels), ("mask", mask)):
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"{name} must be (N, T) = {expected} to match the padded logits, "
                    f"got {tuple(tensor.shape)}"
                )
        return
    if logits.ndim != 2:
        raise ValueError(
            f"logits must be padded (N, T, V) or packed (M, V), got shape "
            f"{tuple(logits.shape)}; pass the shifted logits of one forward pass"
        )
    tokens = int(mask.sum())
    if logits.shape[0] != tokens or tuple(labels.shape) != (tokens,):
        raise ValueError(
            f"packed logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must "
            f"have one row per completion token, M = mask.sum() = {tokens}; pack them "
            "with tensor[mask]"
        )


def require_pairs(inputs: LossInputs, loss_name: str) -> int:
    """Return B for a pairwise batch, or raise ValueError naming the loss that needs pairs."""
    _check_mask(inputs)
    if inputs.num_pairs is None:
        raise ValueError(
            f"loss {loss_name!r} needs preference pairs, but num_pairs is None "
            "(binary-feedback rows); use binary_cringe or sft for binary data"
        )
    if inputs.is_good is not None:
        raise ValueError(
            "a pairwise batch (num_pairs set) must have is_good None, because rows [:B] "
            "are chosen and rows [B:] rejected; set num_pairs None for binary-feedback rows"
        )
    rows = inputs.mask.shape[0]
    if rows != 2 * inputs.num_pairs:
        raise ValueError(
            f"a pairwise batch has 2 * num_pairs rows, got {rows} rows for "
            f"num_pairs = {inputs.num_pairs}; set num_pairs to the number of pairs B"
        )
    return inputs.num_pairs


def good_rows(inputs: LossInputs, loss_name: str) -> torch.Tensor:
    """Return the (N,) bool mask of good rows, for either layout.

    In the pairwise layout the chosen rows are good and the rejected rows bad.
    """
    _check_mask(inputs)
    rows = inputs.mask.shape[0]
    if inputs.num_pairs is not None:
        num_pairs = require_pairs(inputs, loss_name)
        is_good = torch.zeros(rows, dtype=torch.bool, device=inputs.mask.device)
        is_good[:num_pairs] = True
        return is_good

    if inputs.is_good is None:
        raise ValueError(
            f"loss {loss_name!r} got a binary-feedback batch (num_pairs None) without "
            "is_good; collate the rows with collate_examples, or set num_pairs for a "
            "pairwise batch"
        )
    if tuple(inputs.is_good.shape) != (rows,):
        raise ValueError(
            f"is_good must be (N,) = ({rows},), one flag per row, got {tuple(inputs.is_good.shape)}"
        )
    return inputs.is_good.to(device=inputs.mask.device, dtype=torch.bool)


def divide_by_normalizer(total: torch.Tensor, normalizer: torch.Tensor) -> torch.Tensor:
    """Divide a loss sum by the global count, at least 1, in the sum's dtype."""
    return total / normalizer.clamp(min=1).to(device=total.device, dtype=total.dtype)


def _check_mask(inputs: LossInputs) -> None:
    if inputs.mask.ndim != 2 or inputs.mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be an (N, T) bool tensor, got {inputs.mask.dtype} of shape "
            f"{tuple(inputs.mask.shape)}"
        )
